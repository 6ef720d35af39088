#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for moduled, as root: apt packages,
# kernel headers (a stand-in when none match the running kernel), tracefs,
# and a venv from the system Python that sees the distro's bcc.
# Idempotent: a second run only checks.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
extras=${EXTRAS:-test}
stamp=$venv/.moduled-setup

say() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
  if [[ $(id -u) -ne 0 ]]; then
    say "not root: skipping apt packages, headers and tracefs (run as root for eBPF)"
    return 1
  fi
}

apt_packages=(
  python3 python3-venv python3-dev python3-bpfcc bpfcc-tools libbpfcc
  python3-pyroute2 iproute2 procps kmod gcc make
)

install_apt() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# bcc compiles probes against the running kernel's headers.  When the
# distribution has no package for this kernel (custom or cloud kernels), link
# the newest linux-headers-*-amd64 as a stand-in and say so: tracepoint and
# uprobe programs only need the common UAPI and structure layouts.
install_headers() {
  local rel build
  rel=$(uname -r)
  build=/lib/modules/$rel/build
  if [[ -e $build/include ]]; then
    local target
    target=$(readlink -f "$build")
    if [[ $target != *"$rel"* ]]; then
      say "note: kernel $rel has no headers package; bcc uses the stand-in" \
        "$(basename "$target") (linked as $build)"
    fi
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -qq "linux-headers-$rel" >/dev/null 2>&1; then
    say "installed linux-headers-$rel"
    return 0
  fi
  local arch pkg
  arch=$(dpkg --print-architecture)
  pkg=$(apt-cache search --names-only "^linux-headers-[0-9].*-$arch\$" |
    awk '{print $1}' | grep -v -e cloud -e rt- | sort -V | tail -n 1)
  if [[ -z $pkg ]]; then
    say "WARNING: no linux-headers package found; eBPF probes will be unavailable"
    return 0
  fi
  apt-get install -y -qq "$pkg" >/dev/null
  local ver=${pkg#linux-headers-}
  local common=/usr/src/linux-headers-${ver%-"$arch"}-common
  mkdir -p "/lib/modules/$rel"
  ln -sfn "/usr/src/linux-headers-$ver" "$build"
  [[ -d $common ]] && ln -sfn "$common" "/lib/modules/$rel/source"
  say "WARNING: no headers for kernel $rel; using stand-in $pkg" \
    "(linked as $build); probes that read kernel structures may misread them"
}

mount_tracefs() {
  if [[ ! -e /sys/kernel/tracing/events ]]; then
    mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null &&
      say "mounted tracefs at /sys/kernel/tracing" ||
      say "WARNING: could not mount tracefs; tracepoints will be unavailable"
  fi
  if [[ ! -e /sys/kernel/debug/tracing && -d /sys/kernel/debug ]]; then
    mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
  fi
}

make_venv() {
  local py=/usr/bin/python3
  if [[ ! -x $venv/bin/python ]]; then
    say "creating $venv from $py (with system site packages, for bcc)"
    "$py" -m venv --system-site-packages "$venv"
  fi
  local want
  want=$(cat "$here/pyproject.toml" | sha256sum | cut -c1-16)-$extras
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -e "$here[$extras]"
    echo "$want" >"$stamp"
  fi
}

if need_root; then
  install_apt
  install_headers
  mount_tracefs
fi
make_venv
