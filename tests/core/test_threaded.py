from __future__ import annotations

import threading
import time

import moduled as md

from .helpers import Recorder


class Worker(md.Module):
    """A THREADED module that records where and how its batches ran."""

    flags = md.ModFlag.THREADED

    def __init__(self, name="worker", pause=0.0):
        super().__init__(name)
        self.pause = pause
        self.threads: set[int] = set()
        self.running = 0
        self.max_running = 0
        self.got: list[object] = []
        self.lock = threading.Lock()

    def on_evt(self, events):
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.threads.add(threading.get_ident())
        time.sleep(self.pause)
        for ev in events:
            self.got.append(ev.data.message)
            self.tell("sink", ev.data.message)
        with self.lock:
            self.running -= 1


def test_threaded_on_evt_runs_off_the_loop_thread_one_batch_at_a_time():
    ctx = md.Context("threaded")
    worker = ctx.register(Worker(pause=0.002))

    def start(m):
        for i in range(200):
            m.tell("worker", i)
            if i % 20 == 0:
                m.tell(m, "tick")

    def sink_evt(m, evs):
        if len([e for e in m.events if e.data.sender is worker]) == 200:
            m.ctx.quit()

    sink = ctx.register(Recorder("sink", evt=sink_evt))
    ctx.register(Recorder("feeder", start=start))
    ctx.loop()

    assert worker.got == list(range(200))
    assert [e.data.message for e in sink.events] == list(range(200))
    assert threading.get_ident() not in worker.threads
    assert worker.max_running == 1


def test_loop_keeps_serving_others_while_a_threaded_module_works():
    ctx = md.Context("busy")
    worker = ctx.register(Worker(pause=0.3))
    ctx.register(Recorder("sink"))
    ticks: list[float] = []

    def evt(m, evs):
        ticks.append(time.monotonic())
        if len(ticks) < 20:
            m.register(md.Timer(5_000_000), flags=md.SrcFlag.ONESHOT)
        else:
            m.ctx.quit()

    def start(m):
        m.tell("worker", "slow")
        m.register(md.Timer(5_000_000), flags=md.SrcFlag.ONESHOT)

    ctx.register(Recorder("ticker", start=start, evt=evt))
    t0 = time.monotonic()
    ctx.loop()

    assert len(ticks) == 20
    assert ticks[-1] - t0 < 0.3  # the ticker finished while the worker slept
    assert worker.got == ["slow"]  # loop exit waited for the batch in flight


def test_exception_in_a_threaded_on_evt_fails_only_that_module():
    class Bad(md.Module):
        flags = md.ModFlag.THREADED

        def on_evt(self, events):
            raise ValueError("worker blew up")

    ctx = md.Context("bad", persist=True)
    bad = ctx.register(Bad("bad"))

    def evt(m, evs):
        if bad.state is md.ModState.STOPPED:
            m.ctx.quit(6)
        else:
            m.register(md.Timer(1_000_000), flags=md.SrcFlag.ONESHOT | md.SrcFlag.FORCE)

    def start(m):
        m.tell("bad", 1)
        m.register(md.Timer(1_000_000), flags=md.SrcFlag.ONESHOT)

    ctx.register(Recorder("watch", start=start, evt=evt))

    assert ctx.loop() == 6
    assert isinstance(bad.failure, ValueError)
