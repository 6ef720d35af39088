"""What this machine can do for moduled's kernel sources, with remedies.

``moduled doctor [--json]`` prints one line a capability.  Exit status: 0
when every *required* check passes, 1 when one does not, 2 on a usage
error.  Required are the checks without which a whole family of kernel
sources cannot work (privileges, tracefs, bcc, headers, ring buffers for
the eBPF probes; the proc connector; inotify limits).  Optional ones only
take one kind of source away and never fail the doctor: kprobes (compiled
out of some kernels, this project's CI VM among them: use a Tracepoint),
uprobes, BTF.  They are shown as ``missing (optional)``.

``--json`` prints ``{"ok": bool, "required": [names], "checks": [{"name",
"ok", "required", "detail", "remedy"}, ...]}``, checks in a fixed order.

The same checks guard registration: a probe whose kernel feature is missing raises
:class:`SourceUnavailable` with the check's detail and remedy (see
:func:`require`), so the doctor and the error always say the same thing.

Facts relied on:

* Capabilities come from ``CapEff`` in ``/proc/self/status``: loading BPF
  programs needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN), the proc
  connector CAP_NET_ADMIN.
* bcc compiles against ``/lib/modules/$(uname -r)/build``.  When that link
  points at another kernel version the headers are a stand-in: tracepoints
  and uprobes work (they read records by the offsets tracefs gives), code
  that reads kernel structures may misread them.
* Kprobes need CONFIG_KPROBES (``kprobe_events`` in tracefs); uprobes
  CONFIG_UPROBE_EVENTS (``uprobe_events``); BPF ring buffers kernel 5.8.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import socket
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ..errors import SourceUnavailable
from .tracefs import find_tracefs

__all__ = ["REQUIRED", "Check", "check", "main", "report", "require"]

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
_NETLINK_CONNECTOR = 11
_CN_IDX_PROC = 1


class Check(NamedTuple):
    """One capability: whether it is there, what was seen, how to get it."""

    name: str
    ok: bool
    detail: str
    remedy: str


def _cap_eff() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _has(caps: int, bit: int) -> bool:
    return bool(caps >> bit & 1)


def check_bpf_privileges() -> Check:
    caps = _cap_eff()
    ok = (_has(caps, CAP_BPF) and _has(caps, CAP_PERFMON)) or _has(caps, CAP_SYS_ADMIN)
    names = [
        n
        for n, b in (
            ("CAP_BPF", CAP_BPF),
            ("CAP_PERFMON", CAP_PERFMON),
            ("CAP_SYS_ADMIN", CAP_SYS_ADMIN),
            ("CAP_NET_ADMIN", CAP_NET_ADMIN),
        )
        if _has(caps, b)
    ]
    return Check(
        "privileges",
        ok,
        f"euid {os.geteuid()}, effective capabilities: {', '.join(names) or 'none'}",
        "run as root or grant CAP_BPF and CAP_PERFMON "
        "(systemd: AmbientCapabilities=CAP_BPF CAP_PERFMON)",
    )


def check_tracefs() -> Check:
    root = find_tracefs()
    if root is not None:
        return Check("tracefs", True, f"mounted at {root}", "")
    if _mounted("tracefs"):
        return Check(
            "tracefs",
            False,
            f"mounted but not readable by euid {os.geteuid()}",
            "run as root (tracefs is mode 0700)",
        )
    return Check(
        "tracefs",
        False,
        "not mounted",
        "mount it: mount -t tracefs tracefs /sys/kernel/tracing",
    )


def _mounted(fstype: str) -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            return any(line.split()[2:3] == [fstype] for line in f)
    except OSError:
        return False


def check_bcc() -> Check:
    try:
        import bcc

        return Check("bcc", True, f"bcc {getattr(bcc, '__version__', '?')}", "")
    # any import failure means bcc is unusable here
    except Exception as exc:
        return Check(
            "bcc",
            False,
            f"cannot import bcc ({exc})",
            "install the distribution's python3-bpfcc and use a Python that "
            "sees system site packages (make setup)",
        )


def check_headers() -> Check:
    rel = platform.release()
    build = f"/lib/modules/{rel}/build"
    remedy = f"install linux-headers-{rel} (make setup links a stand-in)"
    if not os.path.isdir(os.path.join(build, "include")):
        return Check("headers", False, f"{build} missing", remedy)
    target = os.path.realpath(build)
    m = re.search(r"linux-headers-(\d+\.\d+)", target)
    if m and not rel.startswith(m.group(1) + "."):
        return Check(
            "headers",
            True,
            f"stand-in {os.path.basename(target)} for kernel {rel}: "
            "code reading kernel structures may misread them",
            remedy,
        )
    return Check("headers", True, f"{build} -> {target}", "")


def check_btf() -> Check:
    ok = os.path.exists("/sys/kernel/btf/vmlinux")
    return Check(
        "btf",
        ok,
        "/sys/kernel/btf/vmlinux present" if ok else "/sys/kernel/btf/vmlinux absent",
        "a kernel built with CONFIG_DEBUG_INFO_BTF (not needed by moduled's "
        "probes, used by CO-RE tools)",
    )


def _tracefs_file(name: str) -> str | None:
    root = find_tracefs()
    if root and os.path.exists(os.path.join(root, name)):
        return os.path.join(root, name)
    return None


def _unknown(name: str) -> Check:
    return Check(
        name,
        False,
        "cannot tell: tracefs is not readable here",
        "run as root with tracefs mounted at /sys/kernel/tracing",
    )


def check_kprobes() -> Check:
    if find_tracefs() is None:
        return _unknown("kprobes")
    path = _tracefs_file("kprobe_events")
    return Check(
        "kprobes",
        path is not None,
        f"{path} present"
        if path
        else "kprobes are compiled out of this kernel (CONFIG_KPROBES)",
        "use a Tracepoint instead (see /sys/kernel/tracing/available_events) "
        "or a kernel with CONFIG_KPROBES=y",
    )


def check_uprobes() -> Check:
    if find_tracefs() is None:
        return _unknown("uprobes")
    path = _tracefs_file("uprobe_events")
    return Check(
        "uprobes",
        path is not None,
        f"{path} present" if path else "no uprobe_events (CONFIG_UPROBE_EVENTS)",
        "a kernel with CONFIG_UPROBE_EVENTS=y, and tracefs mounted",
    )


def check_ringbuf() -> Check:
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    ok = version >= (5, 8)
    return Check(
        "ringbuf",
        ok,
        f"kernel {platform.release()} "
        + ("has BPF ring buffers" if ok else "predates BPF ring buffers (5.8)"),
        "a kernel 5.8 or later",
    )


def check_proc_connector() -> Check:
    remedy = "run as root or grant CAP_NET_ADMIN; a kernel with CONFIG_PROC_EVENTS"
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_CONNECTOR)
    except OSError as exc:
        return Check("proc_connector", False, f"no connector socket ({exc})", remedy)
    try:
        s.bind((os.getpid(), _CN_IDX_PROC))
    except OSError as exc:
        return Check("proc_connector", False, f"cannot bind ({exc})", remedy)
    finally:
        s.close()
    ok = _has(_cap_eff(), CAP_NET_ADMIN)
    detail = "bound" + ("" if ok else "; subscribing needs CAP_NET_ADMIN")
    return Check("proc_connector", ok, detail, remedy)


def check_inotify() -> Check:
    values = {}
    for name in ("max_user_watches", "max_user_instances", "max_queued_events"):
        try:
            with open(f"/proc/sys/fs/inotify/{name}", encoding="ascii") as f:
                values[name] = int(f.read())
        except (OSError, ValueError):
            values[name] = 0
    ok = values["max_user_watches"] >= 8192 and values["max_user_instances"] >= 16
    return Check(
        "inotify",
        ok,
        ", ".join(f"{k}={v}" for k, v in values.items()),
        "raise them: sysctl fs.inotify.max_user_watches=524288 "
        "fs.inotify.max_user_instances=512",
    )


CHECKS: dict[str, Callable[[], Check]] = {
    "privileges": check_bpf_privileges,
    "tracefs": check_tracefs,
    "bcc": check_bcc,
    "headers": check_headers,
    "btf": check_btf,
    "kprobes": check_kprobes,
    "uprobes": check_uprobes,
    "ringbuf": check_ringbuf,
    "proc_connector": check_proc_connector,
    "inotify": check_inotify,
}


#: Checks that make the doctor fail (see the module docstring).
REQUIRED = frozenset(
    {"privileges", "tracefs", "bcc", "headers", "ringbuf", "proc_connector", "inotify"}
)


def check() -> list[Check]:
    """Run every check, in a fixed order."""
    return [fn() for fn in CHECKS.values()]


@functools.cache
def _cached(name: str) -> Check:
    return CHECKS[name]()


def require(subject: str, names: Sequence[str]) -> None:
    """Raise SourceUnavailable for the first failing check of ``names``.

    Successful results are cached for the process (a capability does not
    appear later); failures are re-checked each time.
    """
    for name in names:
        result = _cached(name)
        if not result.ok:
            _cached.cache_clear()
            raise SourceUnavailable(f"{subject}: {result.detail}; {result.remedy}")


def report(results: Sequence[Check]) -> dict[str, object]:
    """The ``--json`` document for ``results``."""
    return {
        "ok": all(r.ok for r in results if r.name in REQUIRED),
        "required": sorted(REQUIRED),
        "checks": [{**r._asdict(), "required": r.name in REQUIRED} for r in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print what this machine can do; 0 when every required check passes."""
    parser = argparse.ArgumentParser(
        prog="moduled doctor",
        description="check kernel features moduled uses",
        epilog="exit status: 0 when every required check passes (optional: "
        "kprobes, uprobes, btf), 1 when a required one fails",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    results = check()
    doc = report(results)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for r in results:
            if r.ok:
                state = "ok"
            elif r.name in REQUIRED:
                state = "MISSING"
            else:
                state = "missing (optional)"
            print(f"{r.name:<15} {state:<19} {r.detail}")
            if not r.ok and r.remedy:
                print(f"{'':<36}-> {r.remedy}")
        verdict = "ready" if doc["ok"] else "NOT READY (a required check failed)"
        print(f"{'doctor':<15} {verdict}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
