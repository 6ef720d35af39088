"""A harness for source tests: one module under test, one watchdog module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import moduled as md

GUARD_CODE = 99


class Probe(md.Module):
    """Runs ``start(self)`` in on_start and ``evt(self, events)`` per batch,
    keeping every event it was given."""

    def __init__(
        self,
        start: Callable[[Probe], Any],
        evt: Callable[[Probe, list[md.Event]], Any] | None = None,
        name: str = "probe",
    ) -> None:
        super().__init__(name)
        self._start_cb = start
        self._evt_cb = evt
        self.seen: list[md.Event] = []
        self.state_: dict[str, Any] = {}

    def on_start(self) -> None:
        self._start_cb(self)

    def on_evt(self, events: list[md.Event]) -> None:
        self.seen.extend(events)
        if self._evt_cb is not None:
            self._evt_cb(self, events)

    def of(self, type_: md.SrcType) -> list[Any]:
        return [ev.data for ev in self.seen if ev.type is type_]


class _Guard(md.Module):
    """Ends a test loop that would otherwise hang, with GUARD_CODE."""

    def __init__(self, seconds: float) -> None:
        super().__init__("guard")
        self._ns = int(seconds * 1e9)

    def on_start(self) -> None:
        self.register(md.Timer(self._ns), flags=md.SrcFlag.ONESHOT)

    def on_evt(self, events: list[md.Event]) -> None:
        self.ctx.quit(GUARD_CODE)


def run(*modules: md.Module, limit: float = 5.0) -> int:
    """Loop a fresh context with ``modules`` until one quits (or ``limit``
    seconds pass: then the result is GUARD_CODE)."""
    ctx = md.Context("srctest")
    for module in modules:
        ctx.register(module)
    ctx.register(_Guard(limit))
    return ctx.loop()
