"""The restart policy of plugin modules: never, or on failure with backoff.

A module fails when an exception escapes one of its hooks; the runtime stops
it and keeps the exception as ``module.failure``.  Under ``on-failure`` the
daemon starts it again after ``restart_delay`` seconds, then twice as long
after each further failure, never waiting longer than
``restart_max_delay``.  A module that stays up for longer than the cap
earns a clean slate: its next failure waits ``restart_delay`` again.  A
module stopped on purpose (``modulectl stop``, ``on_start`` returning
False) has no failure and is left stopped.
"""

from __future__ import annotations

import time

__all__ = ["Backoff"]


class Backoff:
    """The restart schedule of one module."""

    __slots__ = ("attempts", "base", "cap", "last_start_ns")

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = max(cap, base)
        self.attempts = 0
        self.last_start_ns = time.monotonic_ns()

    def started(self) -> None:
        """Note that the module was (re)started now."""
        self.last_start_ns = time.monotonic_ns()

    def next_delay(self) -> float:
        """Seconds to wait before the next restart, counting this failure."""
        uptime = (time.monotonic_ns() - self.last_start_ns) / 1e9
        if uptime > self.cap:
            self.attempts = 0
        delay = min(self.base * (2**self.attempts), self.cap)
        self.attempts += 1
        return delay
