"""Attaching compiled functions to kernel hooks, one fd per probe.

bcc's ``attach_*`` methods keep their fds in tables of the ``BPF`` object
keyed by event name: the tracepoint, or ``p_<path>_0x<addr>`` for a uprobe.
Two probes of one program on the same hook (a uprobe and a uretprobe with
saved arguments on one function, ``"c"`` and libc's full path, two filters
on one tracepoint) get the same key, so the second attach overwrites the
first's fd: it stays open and attached until the process exits, and
detaching either probe detaches the other.  Here each attachment gets its
own event name (suffix ``_md<n>``) and its fd stays with the probe that
made it, as an :class:`Attachment` that :func:`release` undoes.

bcc also attaches functions named by its conventions
(``tracepoint__<cat>__<name>``, ``raw_tracepoint__<name>``,
``kprobe__<fn>``, ``kretprobe__<fn>``) when the program is built;
:func:`claim_autoloaded` takes those out of bcc's tables for the source
whose text defines them, so that source's detach closes them.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Attachment",
    "attach_kprobe",
    "attach_raw_tracepoint",
    "attach_tracepoint",
    "attach_uprobe",
    "claim_autoloaded",
    "release",
]

_serial = itertools.count(1)
_EV_CHARS = re.compile(rb"[^A-Za-z0-9_]")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attached function: its fd and how to undo it.

    ``kind`` is ``perf`` (tracepoint), ``raw`` (raw tracepoint, a plain
    fd), ``uprobe`` or ``kprobe`` (perf fd plus a probe event name).
    """

    kind: str
    fd: int
    ev_name: bytes = b""


def _failed(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: cannot attach ({os.strerror(err) if err else '?'})")


def _unique(ev_name: bytes) -> bytes:
    # Probe event names are at most 64 characters in tracefs (the fallback
    # bcc uses when perf cannot create the probe itself).
    suffix = b"_md%d" % next(_serial)
    return _EV_CHARS.sub(b"_", ev_name)[: 60 - len(suffix)] + suffix


def attach_tracepoint(bpf: Any, tp: str, fn_name: str) -> Attachment:
    """Attach ``fn_name`` to tracepoint ``category:name``."""
    from bcc import BPF
    from bcc.libbcc import lib

    fn = bpf.load_func(fn_name.encode(), BPF.TRACEPOINT)
    category, name = tp.encode().split(b":")
    fd = lib.bpf_attach_tracepoint(fn.fd, category, name)
    if fd < 0:
        raise _failed(f"tracepoint {tp}: function {fn_name}")
    return Attachment("perf", fd)


def attach_raw_tracepoint(bpf: Any, tp: str, fn_name: str) -> Attachment:
    """Attach ``fn_name`` to raw tracepoint ``tp``."""
    from bcc import BPF
    from bcc.libbcc import lib

    fn = bpf.load_func(fn_name.encode(), BPF.RAW_TRACEPOINT)
    fd = lib.bpf_attach_raw_tracepoint(fn.fd, tp.encode())
    if fd < 0:
        raise _failed(f"raw tracepoint {tp}: function {fn_name}")
    return Attachment("raw", fd)


def attach_uprobe(
    bpf: Any,
    binary: str,
    symbol: str | int,
    fn_name: str,
    *,
    ret: bool = False,
    pid: int | None = None,
) -> Attachment:
    """Attach ``fn_name`` at entry (or return) of ``symbol`` in ``binary``."""
    from bcc import BPF
    from bcc.libbcc import lib

    c_pid = pid if pid else -1
    sym = symbol if isinstance(symbol, str) else ""
    addr = symbol if isinstance(symbol, int) else None
    path, where = BPF._check_path_symbol(binary.encode(), sym.encode(), addr, c_pid)
    fn = bpf.load_func(fn_name.encode(), BPF.KPROBE)
    ev_name = _unique(b"%s_%s_0x%x" % (b"r" if ret else b"p", path, where))
    fd = lib.bpf_attach_uprobe(fn.fd, int(ret), ev_name, path, where, c_pid)
    if fd < 0:
        kind = "uretprobe" if ret else "uprobe"
        raise _failed(f"{kind} {binary}:{symbol}: function {fn_name}")
    return Attachment("uprobe", fd, ev_name)


def attach_kprobe(
    bpf: Any, function: str, fn_name: str, *, ret: bool = False
) -> Attachment:
    """Attach ``fn_name`` at entry (or return) of kernel ``function``."""
    from bcc import BPF
    from bcc.libbcc import lib

    fn = bpf.load_func(fn_name.encode(), BPF.KPROBE)
    ev_name = _unique(b"%s_%s" % (b"r" if ret else b"p", function.encode()))
    fd = lib.bpf_attach_kprobe(fn.fd, int(ret), ev_name, function.encode(), 0, 0)
    if fd < 0:
        kind = "kretprobe" if ret else "kprobe"
        raise _failed(f"{kind} {function}: function {fn_name}")
    return Attachment("kprobe", fd, ev_name)


def release(a: Attachment) -> None:
    """Detach and close one attachment.

    Raises:
        OSError: the kernel refused (the fd is closed anyway).
    """
    from bcc.libbcc import lib

    if a.kind == "raw":
        os.close(a.fd)
        return
    res = lib.bpf_close_perf_event_fd(a.fd)
    if a.kind == "uprobe":
        res = lib.bpf_detach_uprobe(a.ev_name) or res
    elif a.kind == "kprobe":
        res = lib.bpf_detach_kprobe(a.ev_name) or res
    if res < 0:
        raise OSError(
            ctypes.get_errno(), f"cannot detach {a.ev_name.decode() or a.kind}"
        )


def _defined(text: str) -> set[bytes]:
    """Names of the auto-attached functions ``text`` defines."""
    names = {
        f"tracepoint__{m[0]}__{m[1]}"
        for m in re.findall(r"\bTRACEPOINT_PROBE\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)", text)
    }
    names |= {
        f"raw_tracepoint__{m}"
        for m in re.findall(r"\bRAW_TRACEPOINT_PROBE\s*\(\s*(\w+)\s*\)", text)
    }
    names |= set(
        re.findall(
            r"\b((?:raw_tracepoint|tracepoint|kprobe|kretprobe)__\w+)\s*\(", text
        )
    )
    return {n.encode() for n in names}


def claim_autoloaded(bpf: Any, text: str) -> list[Attachment]:
    """Take what bcc auto-attached for functions ``text`` defines.

    The entries leave bcc's tables, so ``BPF.cleanup()`` no longer closes
    them: the caller owns them and releases them with :func:`release`.
    """
    names = _defined(text)
    out: list[Attachment] = []
    if not names:
        return out
    for tp, fd in list(bpf.tracepoint_fds.items()):
        if b"tracepoint__" + tp.replace(b":", b"__") in names:
            del bpf.tracepoint_fds[tp]
            out.append(Attachment("perf", fd))
    for tp, fd in list(bpf.raw_tracepoint_fds.items()):
        if b"raw_tracepoint__" + tp in names:
            del bpf.raw_tracepoint_fds[tp]
            out.append(Attachment("raw", fd))
    for ev_name, by_fn in list(bpf.kprobe_fds.items()):
        for fn_name, fd in list(by_fn.items()):
            if fn_name in names:
                del by_fn[fn_name]
                out.append(Attachment("kprobe", fd, ev_name))
        if not by_fn:
            del bpf.kprobe_fds[ev_name]
    return out
