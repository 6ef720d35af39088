"""Thresh sources: activity thresholds checked on the loop's own deadlines."""

from __future__ import annotations

import time

import pytest

import moduled as md

from .helpers import Probe, run


def test_inactivity_threshold_fires_with_no_other_event():
    def start(m):
        m.state_["t0"] = time.monotonic()
        m.register(md.Thresh(inactive_ms=50))

    def evt(m, events):
        m.state_["t1"] = time.monotonic()
        m.state_["left"] = m.sources()
        m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0  # not the guard's code: the threshold fired

    (ev,) = probe.of(md.SrcType.THRESH)
    assert ev.inactive_ms >= 50
    assert ev.activity_freq == 0
    assert probe.state_["t1"] - probe.state_["t0"] >= 0.05
    assert probe.state_["left"] == []  # one-shot


def test_activity_threshold_fires_when_the_module_is_busy():
    def start(m):
        m.register(md.Timer(1_000_000))
        m.register(md.Thresh(activity_freq=0.05))

    def evt(m, events):
        if any(ev.type is md.SrcType.THRESH for ev in events):
            m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    (ev,) = probe.of(md.SrcType.THRESH)
    assert ev.inactive_ms == 0
    assert ev.activity_freq > 0.05


def test_inactivity_threshold_waits_while_the_module_keeps_busy():
    def start(m):
        m.register(md.Timer(5_000_000))
        m.register(md.Thresh(inactive_ms=40))
        m.register(md.Timer(150_000_000), flags=md.SrcFlag.ONESHOT)

    def evt(m, events):
        if any(ev.data == md.TimerEvent(150_000_000, 1) for ev in events):
            m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    assert probe.of(md.SrcType.THRESH) == []


@pytest.mark.parametrize(
    ("inactive_ms", "activity_freq"),
    [(0, 0.0), (-1, 0.0), (10, -0.5), (1.5, 0), (True, 0), (0, "1"), (0, float("nan"))],
)
def test_thresh_rejects_missing_or_negative_values(inactive_ms, activity_freq):
    with pytest.raises(md.InvalidArgument):
        md.Thresh(inactive_ms, activity_freq)
