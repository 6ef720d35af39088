"""Signal: a signal read from a signalfd instead of handled asynchronously.

A signalfd only sees signals that are blocked, so the source blocks its
signal (``pthread_sigmask``) in the thread that registers it, which is the
loop thread.  Threads started while the signal is blocked inherit the mask;
a thread started earlier that leaves it unblocked may still take a
process-directed signal (``kill(pid, ...)``) and run the default action, so
register Signal sources before starting other threads.

On detach the source drains its signal from the signalfd, so that nothing
pending is delivered with its default action (which would often kill the
process), and the last source of a signal in a thread restores the
signal's blocked state from before the first one.  When several modules
register the same signal, each arrival goes to one of them only (whichever
signalfd is read first): register a signal on one module and publish it.

Child processes inherit the signal mask, so a program started while a
Signal source is registered starts with that signal blocked (a daemon
plugin running ``subprocess.run`` gets children that ignore SIGTERM).
Python 3.11's ``subprocess`` has no way to reset the mask but
``preexec_fn``: pass ``preexec_fn=moduled.sources.signal.unblock_signals``.
TODO(2026-12): do it without preexec_fn once the minimum Python has a
sigmask option for subprocess.
"""

from __future__ import annotations

import logging
import os
import signal as _signal
import threading
from typing import Any, ClassVar

from ..errors import InvalidArgument, SourceUnavailable
from ..events import SignalEvent
from ..flags import SrcType
from . import _syscalls
from .base import Source

__all__ = ["Signal", "unblock_signals"]

log = logging.getLogger(__name__)

_UNBLOCKABLE = frozenset({_signal.SIGKILL, _signal.SIGSTOP})

# The signal mask is per thread.  Several sources (of different modules) may
# block one signal in one thread: count them, and restore the signal's state
# from before the first one only when the last one detaches.
_blocks = threading.local()


def _block(signo: int) -> None:
    counts: dict[int, list[Any]] = _blocks.__dict__.setdefault("counts", {})
    entry = counts.get(signo)
    if entry is None:
        previous = _signal.pthread_sigmask(_signal.SIG_BLOCK, {signo})
        counts[signo] = [1, signo in previous]
    else:
        entry[0] += 1


def _unblock(signo: int) -> None:
    counts: dict[int, list[Any]] = _blocks.__dict__.setdefault("counts", {})
    entry = counts.get(signo)
    if entry is None:
        return
    entry[0] -= 1
    if entry[0] <= 0:
        del counts[signo]
        if not entry[1]:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {signo})


class Signal(Source):
    """Report each arrival of signal ``signo`` as ``SignalEvent(signo)``.

    Args:
        signo: a signal number (``signal.SIGUSR1``, ``signal.SIGHUP``...),
            1..NSIG-1, not SIGKILL or SIGSTOP.

    Standard signals do not queue: several arrivals before the loop reads
    them may merge into one event.  Real-time signals queue, one event each.
    """

    type: ClassVar[SrcType] = SrcType.SIGNAL

    def __init__(self, signo: int) -> None:
        if isinstance(signo, bool) or not isinstance(signo, int):
            raise InvalidArgument(
                f"Signal: signo {signo!r} must be an int such as signal.SIGUSR1"
            )
        if not 0 < signo < _signal.NSIG:
            raise InvalidArgument(
                f"Signal: signo {signo} is out of range; use 1..{_signal.NSIG - 1}"
            )
        if signo in _UNBLOCKABLE:
            raise InvalidArgument(
                f"Signal: {_signal.Signals(signo).name} can be neither caught nor "
                "blocked; choose another signal"
            )
        self._signo = int(signo)
        self._sfd = -1

    @property
    def key(self) -> int:
        return self._signo

    @property
    def signo(self) -> int:
        return self._signo

    def _name(self) -> str:
        try:
            return _signal.Signals(self._signo).name
        except ValueError:
            return str(self._signo)

    def _attach(self) -> None:
        assert self._ctx is not None
        _block(self._signo)
        try:
            sfd = _syscalls.signalfd([self._signo])
        except OSError as exc:
            _unblock(self._signo)
            raise SourceUnavailable(
                f"Signal({self._name()}): signalfd failed ({exc.strerror}); "
                "raise the open-files limit (ulimit -n) if it is EMFILE"
            ) from exc
        try:
            self._ctx._add_reader(sfd, self._on_readable)
        except BaseException:
            os.close(sfd)
            _unblock(self._signo)
            raise
        self._sfd = sfd

    def _on_readable(self) -> None:
        if self._sfd < 0:
            return
        signos = _syscalls.read_signos(self._sfd)
        if signos:
            self._emit_many([SignalEvent(s) for s in signos])

    def _detach(self) -> None:
        sfd, self._sfd = self._sfd, -1
        if sfd < 0:
            return
        if self._ctx is not None:
            self._ctx._remove_reader(sfd)
        dropped = len(_syscalls.read_signos(sfd))
        if dropped:
            log.debug(
                "%s: %d pending signal(s) dropped on detach", self._name(), dropped
            )
        os.close(sfd)
        _unblock(self._signo)

    def _dump(self) -> dict[str, Any]:
        return {"signo": self._signo, "signal": self._name()}


def unblock_signals() -> None:
    """Unblock every signal in the calling thread.

    Meant as ``subprocess.Popen(..., preexec_fn=unblock_signals)``, so that
    a child does not inherit the signals a Signal source blocked.
    """
    _signal.pthread_sigmask(_signal.SIG_SETMASK, set())
