"""Thresh: fire when the owning module has been idle, or busy, for too long.

Nothing in the kernel signals "this module did nothing for 5 s", so the
source keeps a deadline on the loop (``_call_at``): for ``inactive_ms`` at
the moment the module's inactivity would reach the threshold (re-armed if
the module was active meanwhile), for ``activity_freq`` every
:data:`CHECK_NS`.  Either way the event arrives on time even when no other
event wakes the loop.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from ..errors import InvalidArgument
from ..events import ThreshEvent
from ..flags import SrcFlag, SrcType
from .base import Source

__all__ = ["CHECK_NS", "Thresh"]

CHECK_NS = 100_000_000
"""How often an ``activity_freq`` threshold is checked (100 ms)."""


class Thresh(Source):
    """Fire once when the module crosses an activity threshold.

    Args:
        inactive_ms: fire when the module has delivered and sent nothing for
            this many milliseconds (``stats().inactive_ms``); 0 disables.
        activity_freq: fire when ``stats().activity_freq`` (actions per ms
            since registration) rises above this value; 0 disables.

    At least one value must be > 0.  The event is
    ``ThreshEvent(inactive_ms, activity_freq)`` carrying the measured value
    of the threshold that was crossed and 0 for the other.  One-shot: the
    source deregisters itself after its event; register a new one to watch
    again.
    """

    type: ClassVar[SrcType] = SrcType.THRESH
    forced_flags: ClassVar[SrcFlag] = SrcFlag.ONESHOT

    def __init__(self, inactive_ms: int = 0, activity_freq: float = 0.0) -> None:
        if isinstance(inactive_ms, bool) or not isinstance(inactive_ms, int):
            raise InvalidArgument(
                f"Thresh: inactive_ms {inactive_ms!r} must be an int (milliseconds)"
            )
        if isinstance(activity_freq, bool) or not isinstance(
            activity_freq, (int, float)
        ):
            raise InvalidArgument(
                f"Thresh: activity_freq {activity_freq!r} must be a number "
                "(actions per ms)"
            )
        if inactive_ms < 0 or not activity_freq >= 0:  # also rejects NaN
            raise InvalidArgument(
                f"Thresh: inactive_ms={inactive_ms!r}, activity_freq="
                f"{activity_freq!r}: values must be >= 0"
            )
        if activity_freq == float("inf"):
            raise InvalidArgument("Thresh: activity_freq must be finite")
        if inactive_ms == 0 and activity_freq == 0:
            raise InvalidArgument(
                "Thresh: set inactive_ms or activity_freq (or both) above 0"
            )
        self._inactive_ms = inactive_ms
        self._activity_freq = float(activity_freq)
        self._handle: Any = None
        self._checks = 0

    @property
    def key(self) -> tuple[int, float]:
        return (self._inactive_ms, self._activity_freq)

    @property
    def inactive_ms(self) -> int:
        return self._inactive_ms

    @property
    def activity_freq(self) -> float:
        return self._activity_freq

    def _attach(self) -> None:
        self._arm(time.monotonic_ns())

    def _arm(self, now: int) -> None:
        """Schedule the next check: when inactivity could reach the threshold,
        or at the next periodic activity check, whichever comes first."""
        module, ctx = self._module, self._ctx
        assert module is not None and ctx is not None
        delays = []
        if self._inactive_ms:
            idle = module.stats().inactive_ms
            # stats() rounds down to whole ms: aim 1 ms past the threshold.
            delays.append(max(self._inactive_ms - idle, 0) * 1_000_000 + 1_000_000)
        if self._activity_freq:
            delays.append(CHECK_NS)
        self._handle = ctx._call_at(now + min(delays), self._check)

    def _check(self) -> None:
        self._handle = None
        module = self._module
        if module is None:
            return
        self._checks += 1
        stats = module.stats()
        if self._inactive_ms and stats.inactive_ms >= self._inactive_ms:
            self._emit(ThreshEvent(stats.inactive_ms, 0.0))
        elif self._activity_freq and stats.activity_freq > self._activity_freq:
            self._emit(ThreshEvent(0, stats.activity_freq))
        else:
            self._arm(time.monotonic_ns())

    def _detach(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def _dump(self) -> dict[str, Any]:
        return {
            "inactive_ms": self._inactive_ms,
            "activity_freq": self._activity_freq,
            "checks": self._checks,
        }
