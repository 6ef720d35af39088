"""Timer: a timerfd that expires after (or at) a time, once or periodically.

A timerfd counts expirations itself: if the loop is late, the next read
returns how many periods went by, so a slow module sees one event with
``expirations > 1`` instead of a burst of stale events.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from ..errors import InvalidArgument, SourceUnavailable
from ..events import TimerEvent
from ..flags import SrcFlag, SrcType
from . import _syscalls
from .base import Source

__all__ = ["Timer"]

_CLOCKS = {
    time.CLOCK_MONOTONIC: "CLOCK_MONOTONIC",
    time.CLOCK_REALTIME: "CLOCK_REALTIME",
    time.CLOCK_BOOTTIME: "CLOCK_BOOTTIME",
}


class Timer(Source):
    """Expire every ``ns`` nanoseconds on ``clock``.

    Args:
        ns: the period, a positive int.  With ``SrcFlag.TMR_ABSOLUTE`` it is
            an absolute time on ``clock`` instead (``time.clock_gettime_ns``):
            the timer expires once, at that time, and is then deregistered.
        clock: ``time.CLOCK_MONOTONIC`` (default), ``CLOCK_REALTIME`` (follows
            wall-clock changes; the one to use with absolute dates) or
            ``CLOCK_BOOTTIME`` (counts suspend).

    ``SrcFlag.ONESHOT`` expires once after ``ns`` and deregisters the source.
    Each event is ``TimerEvent(ns, expirations)``; ``expirations`` counts the
    periods elapsed since the previous event (more than 1 when the loop was
    late).
    """

    type: ClassVar[SrcType] = SrcType.TIMER
    type_flags: ClassVar[SrcFlag] = SrcFlag.TMR_ABSOLUTE

    def __init__(self, ns: int, clock: int = time.CLOCK_MONOTONIC) -> None:
        if isinstance(ns, bool) or not isinstance(ns, int) or ns <= 0:
            raise InvalidArgument(
                f"Timer: ns {ns!r} must be a positive int (nanoseconds)"
            )
        if isinstance(clock, bool) or clock not in _CLOCKS:
            raise InvalidArgument(
                f"Timer: clock {clock!r} is not supported; use time.CLOCK_MONOTONIC, "
                "time.CLOCK_REALTIME or time.CLOCK_BOOTTIME"
            )
        self._ns = ns
        self._clock = clock
        self._tfd = -1
        self._expirations = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self._ns, self._clock)

    @property
    def ns(self) -> int:
        return self._ns

    @property
    def clock(self) -> int:
        return self._clock

    def _attach(self) -> None:
        assert self._ctx is not None
        try:
            tfd = _syscalls.timerfd_create(self._clock)
        except OSError as exc:
            raise SourceUnavailable(
                f"Timer({self._ns}): timerfd_create failed ({exc.strerror}); "
                "raise the open-files limit (ulimit -n) if it is EMFILE"
            ) from exc
        try:
            absolute = bool(self._flags & SrcFlag.TMR_ABSOLUTE)
            once = absolute or bool(self._flags & SrcFlag.ONESHOT)
            _syscalls.timerfd_settime(
                tfd, self._ns, 0 if once else self._ns, absolute=absolute
            )
            self._ctx._add_reader(tfd, self._on_readable)
        except BaseException:
            os.close(tfd)
            raise
        self._tfd = tfd

    def _on_readable(self) -> None:
        if self._tfd < 0:
            return
        count = _syscalls.read_expirations(self._tfd)
        if not count:
            return
        self._expirations += count
        self._emit(TimerEvent(self._ns, count))
        module = self._module
        if module is not None and self._flags & SrcFlag.TMR_ABSOLUTE:
            # An absolute time passes once: nothing more will come.
            module._drop_source(self)

    def _detach(self) -> None:
        tfd, self._tfd = self._tfd, -1
        if tfd < 0:
            return
        if self._ctx is not None:
            self._ctx._remove_reader(tfd)
        os.close(tfd)

    def _dump(self) -> dict[str, Any]:
        return {
            "ns": self._ns,
            "clock": _CLOCKS[self._clock],
            "absolute": bool(self._flags & SrcFlag.TMR_ABSOLUTE),
            "oneshot": bool(self._flags & SrcFlag.ONESHOT),
            "expirations": self._expirations,
        }
