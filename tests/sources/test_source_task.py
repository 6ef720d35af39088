"""Task sources on the context's real thread pool."""

from __future__ import annotations

import threading

import pytest

import moduled as md

from .helpers import Probe, run


def test_task_result_is_delivered_on_the_loop_thread():
    def work():
        return threading.current_thread().name

    def evt(m, events):
        m.state_["loop_thread"] = threading.current_thread().name
        m.state_["pool"] = getattr(m.ctx, "_task_pool", "unset")
        m.ctx.quit(0)

    probe = Probe(lambda m: m.register(md.Task(work, 7)), evt)

    assert run(probe) == 0

    (ev,) = probe.of(md.SrcType.TASK)
    assert ev.tid == 7
    assert ev.exception is None
    assert ev.result.startswith("srctest")  # worker named after the context
    assert ev.result != probe.state_["loop_thread"]
    assert probe.state_["pool"] is None  # last task gone: pool shut down


def test_task_exception_is_delivered_instead_of_a_result():
    def boom():
        raise KeyError("nope")

    probe = Probe(lambda m: m.register(md.Task(boom, 1)), lambda m, e: m.ctx.quit(0))

    assert run(probe) == 0

    (ev,) = probe.of(md.SrcType.TASK)
    assert ev.result is None
    assert isinstance(ev.exception, KeyError)


def test_several_tasks_share_one_pool_and_each_reports_once():
    def start(m):
        for tid in range(5):
            m.register(md.Task(lambda tid=tid: tid * tid, tid))
        m.state_["pools"] = {id(m.ctx._task_pool)}

    def evt(m, events):
        if len(m.of(md.SrcType.TASK)) == 5:
            m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    assert sorted(e.result for e in probe.of(md.SrcType.TASK)) == [0, 1, 4, 9, 16]
    assert len(probe.state_["pools"]) == 1


def test_a_deregistered_task_discards_its_outcome():
    gate = threading.Event()

    def start(m):
        src = m.register(md.Task(gate.wait, 1))
        m.deregister(src)
        gate.set()
        m.register(md.Timer(30_000_000), flags=md.SrcFlag.ONESHOT)

    probe = Probe(start, lambda m, e: m.ctx.quit(0))

    assert run(probe) == 0

    assert probe.of(md.SrcType.TASK) == []


@pytest.mark.parametrize(("fn", "tid"), [(None, 1), (42, 1), (len, "1"), (len, True)])
def test_task_rejects_a_non_callable_or_a_non_int_tid(fn, tid):
    with pytest.raises(md.InvalidArgument):
        md.Task(fn, tid)
