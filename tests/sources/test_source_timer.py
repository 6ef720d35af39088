"""Timer sources on real timerfds."""

from __future__ import annotations

import time

import pytest

import moduled as md

from .helpers import Probe, run


def test_periodic_timer_fires_repeatedly_with_its_period():
    def evt(m, events):
        if len(m.of(md.SrcType.TIMER)) >= 3:
            m.ctx.quit(0)

    probe = Probe(lambda m: m.register(md.Timer(2_000_000)), evt)

    assert run(probe) == 0

    ticks = probe.of(md.SrcType.TIMER)
    assert len(ticks) >= 3
    assert all(t.ns == 2_000_000 and t.expirations >= 1 for t in ticks)


def test_oneshot_timer_fires_once_and_deregisters():
    def start(m):
        m.state_["src"] = m.register(md.Timer(3_000_000), flags=md.SrcFlag.ONESHOT)
        m.register(md.Timer(60_000_000), flags=md.SrcFlag.ONESHOT)

    def evt(m, events):
        if any(ev.data.ns == 60_000_000 for ev in events):
            m.state_["left"] = [s.dump()["ns"] for s in m.sources(md.SrcType.TIMER)]
            m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    short = [t for t in probe.of(md.SrcType.TIMER) if t.ns == 3_000_000]
    assert short == [md.TimerEvent(3_000_000, 1)]
    assert probe.state_["left"] == []


def test_late_loop_reports_several_expirations_in_one_event():
    def start(m):
        m.register(md.Timer(1_000_000))
        time.sleep(0.03)  # the loop is busy: about 30 periods go by

    probe = Probe(start, lambda m, evs: m.ctx.quit(0))

    assert run(probe) == 0

    first = probe.of(md.SrcType.TIMER)[0]
    assert first.expirations > 1


def test_absolute_realtime_timer_fires_at_the_given_wall_clock_time():
    def start(m):
        m.state_["at"] = time.clock_gettime_ns(time.CLOCK_REALTIME) + 20_000_000
        m.register(
            md.Timer(m.state_["at"], time.CLOCK_REALTIME),
            flags=md.SrcFlag.TMR_ABSOLUTE,
        )

    def evt(m, events):
        m.state_["now"] = time.clock_gettime_ns(time.CLOCK_REALTIME)
        m.state_["left"] = m.sources(md.SrcType.TIMER)
        m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    assert probe.of(md.SrcType.TIMER) == [md.TimerEvent(probe.state_["at"], 1)]
    assert probe.state_["now"] >= probe.state_["at"]
    assert probe.state_["left"] == []


def test_timer_dump_names_period_and_clock():
    def start(m):
        m.state_["dump"] = m.register(md.Timer(5_000_000, time.CLOCK_BOOTTIME)).dump()
        m.ctx.quit(0)

    probe = Probe(start)

    run(probe)

    dump = probe.state_["dump"]
    assert dump["ns"] == 5_000_000
    assert dump["clock"] == "CLOCK_BOOTTIME"
    assert dump["type"] == "timer"


@pytest.mark.parametrize("ns", [0, -5, 1.5, True, "10", None])
def test_timer_rejects_a_period_that_is_not_a_positive_int(ns):
    with pytest.raises(md.InvalidArgument, match="positive int"):
        md.Timer(ns)


@pytest.mark.parametrize("clock", [time.CLOCK_PROCESS_CPUTIME_ID, 12345, "mono"])
def test_timer_rejects_an_unsupported_clock(clock):
    with pytest.raises(md.InvalidArgument, match="CLOCK_MONOTONIC"):
        md.Timer(1_000, clock)


def test_timer_rejects_a_flag_of_another_source_type():
    def start(m):
        with pytest.raises(md.InvalidArgument):
            m.register(md.Timer(1_000_000), flags=md.SrcFlag.FD_AUTOCLOSE)
        m.state_["left"] = m.sources()
        m.ctx.quit(0)

    probe = Probe(start)

    assert run(probe) == 0
    assert probe.state_["left"] == []
