#!/usr/bin/env bash
# `make run`: the daemon in the foreground with the stock plugins and a
# control socket under RUNDIR (default /run/moduled-dev).  Ctrl-C stops it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
case $venv in /*) ;; *) venv=$here/$venv ;; esac
rundir=${1:-/run/moduled-dev}
sock=$rundir/control.sock

mkdir -p "$rundir"
chmod 0755 "$rundir"

if [[ $(id -u) -eq 0 ]]; then
  # As root the daemon refuses plugins that others could change.
  bad=$(find "$here/daemon/plugins" -maxdepth 1 \( ! -user root -o -perm /022 \) -print)
  if [[ -n $bad ]]; then
    printf 'run: WARNING: these will be refused (not root-owned or group/other-writable):\n%s\n' \
      "$bad" >&2
  fi
else
  echo "run: not root: kernel plugins (eBPF, proc connector) will fail; the rest runs" >&2
fi

cat <<MSG
moduled: foreground daemon, stock plugins from $here/daemon/plugins
moduled: control socket $sock
moduled: from a second terminal:
    $venv/bin/modulectl --socket $sock status
    $venv/bin/modulectl --socket $sock tail      # live findings, Ctrl-C to stop
moduled: Ctrl-C here stops the daemon.

MSG

export PYTHONUNBUFFERED=1
exec "$venv/bin/moduled" \
  --config "$here/daemon/moduled.toml" \
  --plugins "$here/daemon/plugins" \
  --socket "$sock" \
  --log-level "${MODULED_LOG_LEVEL:-info}"
