#!/usr/bin/env bash
# `make install`: moduled as a system service, run as root.
#
#   $PREFIX (/opt/moduled)       a venv from $PYTHON (/usr/bin/python3) with
#                                the system site packages (the distro's bcc),
#                                holding moduled and its dependencies
#   $BINDIR (/usr/local/bin)     moduled and modulectl, links into the venv
#   $UNITDIR (/etc/systemd/system)/moduled.service, its paths set to these
#   $SYSCONFDIR (/etc)/moduled/moduled.toml   the stock config, only if absent
#   $SYSCONFDIR/moduled/plugins/*.py          the stock plugins, root-owned 0644
#
# Then: systemctl daemon-reload && systemctl enable --now moduled.
#
# DESTDIR (empty) stages everything under another root for packaging: files
# go to $DESTDIR$PREFIX and so on, while the paths written inside them (unit,
# config, the venv's scripts) are the final ones.  Plugins are never
# overwritten by a reinstall unless FORCE_PLUGINS=1; the config never is.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
PREFIX=${PREFIX:-/opt/moduled}
BINDIR=${BINDIR:-/usr/local/bin}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/etc/systemd/system}
DESTDIR=${DESTDIR:-}
FORCE_PLUGINS=${FORCE_PLUGINS:-0}

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: ERROR (%s)\n' "$*" >&2; exit 1; }

for var in PREFIX BINDIR SYSCONFDIR UNITDIR; do
  case ${!var} in /*) ;; *) die "$var must be an absolute path, not '${!var}'" ;; esac
done
[[ -x $PYTHON ]] || die "$PYTHON not found; install python3 and python3-venv or set PYTHON"

venv=$DESTDIR$PREFIX
confdir=$DESTDIR$SYSCONFDIR/moduled
owner=()
if [[ $(id -u) -eq 0 ]]; then
  owner=(-o root -g root)
else
  say "not root: files stay yours; a root daemon will refuse these plugins"
fi

# 1. The venv and the project in it.
if [[ ! -x $venv/bin/python ]]; then
  say "creating $venv from $PYTHON (with system site packages, for bcc)"
  "$PYTHON" -m venv --system-site-packages "$venv"
fi
say "installing moduled from $here into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$here"
if [[ -n $DESTDIR ]]; then
  # The venv's scripts name their interpreter by its staged path; make it
  # the final one.
  grep -rlF -- "$venv" "$venv/bin" | while read -r f; do
    sed -i "s|$venv|$PREFIX|g" "$f"
  done
fi

# 2. The commands.
install -d -m 0755 "$DESTDIR$BINDIR"
for cmd in moduled modulectl; do
  ln -sfn "$PREFIX/bin/$cmd" "$DESTDIR$BINDIR/$cmd"
done
say "linked $BINDIR/moduled and $BINDIR/modulectl"

# 3. The unit, pointing at these paths.
install -d -m 0755 "$DESTDIR$UNITDIR"
sed -e "s|/usr/local/bin/moduled|$BINDIR/moduled|g" \
    -e "s|/etc/moduled/|$SYSCONFDIR/moduled/|g" \
    "$here/systemd/moduled.service" >"$DESTDIR$UNITDIR/moduled.service.tmp"
chmod 0644 "$DESTDIR$UNITDIR/moduled.service.tmp"
mv -f "$DESTDIR$UNITDIR/moduled.service.tmp" "$DESTDIR$UNITDIR/moduled.service"
say "unit $UNITDIR/moduled.service"

# 4. Config (kept if present) and the stock plugins, as the trust check wants.
install -d -m 0755 "${owner[@]}" "$confdir" "$confdir/plugins"
if [[ -e $confdir/moduled.toml ]]; then
  say "keeping $SYSCONFDIR/moduled/moduled.toml"
else
  sed -e "s|^# plugins = .*|plugins = [\"$SYSCONFDIR/moduled/plugins\"]|" \
      "$here/daemon/moduled.toml" >"$confdir/moduled.toml.tmp"
  install -m 0644 "${owner[@]}" "$confdir/moduled.toml.tmp" "$confdir/moduled.toml"
  rm -f "$confdir/moduled.toml.tmp"
  say "config $SYSCONFDIR/moduled/moduled.toml"
fi
for plugin in "$here"/daemon/plugins/*.py; do
  target=$confdir/plugins/$(basename "$plugin")
  if [[ -e $target && $FORCE_PLUGINS != 1 ]]; then
    continue
  fi
  install -m 0644 "${owner[@]}" "$plugin" "$target"
done
say "plugins in $SYSCONFDIR/moduled/plugins"

cat <<MSG
install: done.  Start it with:
    systemctl daemon-reload
    systemctl enable --now moduled
    modulectl status
MSG
