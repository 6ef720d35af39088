"""Small modules shared by the core tests."""

from __future__ import annotations

from typing import Any

import moduled as md


class Recorder(md.Module):
    """Records every batch it receives; runs optional callbacks."""

    def __init__(self, name: str, *, start=None, evt=None, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.batches: list[list[md.Event]] = []
        self._start_cb = start
        self._evt_cb = evt

    @property
    def events(self) -> list[md.Event]:
        return [ev for batch in self.batches for ev in batch]

    @property
    def messages(self) -> list[Any]:
        return [ev.data.message for ev in self.events if ev.type is md.SrcType.PS]

    def on_start(self):
        if self._start_cb is not None:
            return self._start_cb(self)
        return None

    def on_evt(self, events):
        self.batches.append(list(events))
        if self._evt_cb is not None:
            self._evt_cb(self, events)


def run(ctx: md.Context, max_rounds: int = 10_000) -> None:
    """Drive ``ctx`` by dispatch until it stops looping (bounded)."""
    ctx.dispatch()
    for _ in range(max_rounds):
        if not ctx.looping:
            return
        ctx.dispatch()
    raise AssertionError("context did not stop")
