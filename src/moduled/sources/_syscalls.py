"""Thin ctypes wrappers for the Linux calls the standard library lacks.

Python 3.11 has no ``os.timerfd_*`` and no ``signalfd``; glibc has both.
Every wrapper raises ``OSError(errno, strerror)`` on failure, keeping the
errno, and retries on EINTR like the ``os`` functions do (PEP 475).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import os
import struct
from collections.abc import Iterable
from typing import Any

__all__ = [
    "SIGINFO_SIZE",
    "TFD_TIMER_ABSTIME",
    "read_expirations",
    "read_signos",
    "signalfd",
    "timerfd_create",
    "timerfd_settime",
]

TFD_TIMER_ABSTIME = 1
"""``timerfd_settime`` flag: the first expiration is an absolute time."""

SIGINFO_SIZE = 128
"""``sizeof(struct signalfd_siginfo)``; ``ssi_signo`` is its first u32."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Sigset(ctypes.Structure):
    # glibc's sigset_t: 1024 bits, whatever the kernel uses.
    _fields_ = [("val", ctypes.c_ubyte * 128)]


_libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.timerfd_create.restype = ctypes.c_int
_libc.timerfd_settime.argtypes = [
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(_Itimerspec),
    ctypes.POINTER(_Itimerspec),
]
_libc.timerfd_settime.restype = ctypes.c_int
_libc.signalfd.argtypes = [ctypes.c_int, ctypes.POINTER(_Sigset), ctypes.c_int]
_libc.signalfd.restype = ctypes.c_int
_libc.sigemptyset.argtypes = [ctypes.POINTER(_Sigset)]
_libc.sigaddset.argtypes = [ctypes.POINTER(_Sigset), ctypes.c_int]

_u64 = struct.Struct("=Q")
_u32 = struct.Struct("=I")


def _check(rc: int) -> int:
    if rc == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def _call(fn: Any, *args: Any) -> int:
    while True:
        try:
            return _check(fn(*args))
        except InterruptedError:
            continue


def timerfd_create(clock: int, *, nonblocking: bool = True) -> int:
    """Create a close-on-exec timerfd on ``clock``; return the fd."""
    flags = os.O_CLOEXEC | (os.O_NONBLOCK if nonblocking else 0)
    return _call(_libc.timerfd_create, clock, flags)


def _timespec(ns: int) -> _Timespec:
    sec, nsec = divmod(ns, 1_000_000_000)
    return _Timespec(sec, nsec)


def timerfd_settime(
    fd: int, value_ns: int, interval_ns: int = 0, *, absolute: bool = False
) -> None:
    """Arm ``fd``: first expiry after ``value_ns`` (or at it when
    ``absolute``), then every ``interval_ns`` (0: once).  ``value_ns`` 0
    disarms the timer."""
    spec = _Itimerspec(_timespec(interval_ns), _timespec(value_ns))
    flags = TFD_TIMER_ABSTIME if absolute else 0
    _call(_libc.timerfd_settime, fd, flags, ctypes.byref(spec), None)


def read_expirations(fd: int) -> int:
    """Read a non-blocking timerfd: expirations since the last read (0 if
    none, e.g. after a spurious wakeup)."""
    try:
        data = os.read(fd, 8)
    except BlockingIOError:
        return 0
    return _u64.unpack(data)[0]


def signalfd(signos: Iterable[int], fd: int = -1, *, nonblocking: bool = True) -> int:
    """Create (``fd`` -1) or update a close-on-exec signalfd for ``signos``."""
    mask = _Sigset()
    _libc.sigemptyset(ctypes.byref(mask))
    for signo in signos:
        if _libc.sigaddset(ctypes.byref(mask), int(signo)) == -1:
            raise OSError(_errno.EINVAL, f"invalid signal number {signo}")
    flags = os.O_CLOEXEC | (os.O_NONBLOCK if nonblocking else 0)
    return _call(_libc.signalfd, fd, ctypes.byref(mask), flags)


def read_signos(fd: int, max_records: int = 64) -> list[int]:
    """Read every pending ``signalfd_siginfo`` record (up to ``max_records``
    per call) from a non-blocking signalfd; return their signal numbers."""
    try:
        data = os.read(fd, SIGINFO_SIZE * max_records)
    except BlockingIOError:
        return []
    return [_u32.unpack_from(data, off)[0] for off in range(0, len(data), SIGINFO_SIZE)]
