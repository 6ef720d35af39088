"""Delivery policy: priorities, batching, rate limits and source keys.

The source used here is a real eventfd watched by the loop: each write is
one event carrying the written value.
"""

from __future__ import annotations

import os
import time

import pytest

import moduled as md
from moduled.sources.base import Source

from .helpers import Recorder


class EventFd(Source):
    type = md.SrcType.FD
    type_flags = md.SrcFlag.FD_AUTOCLOSE

    def __init__(self, label: str) -> None:
        self.label = label
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.closed = False

    @property
    def key(self):
        return self.label

    def _attach(self):
        self._ctx._add_reader(self.fd, self._readable)

    def _readable(self):
        self._emit((self.label, os.eventfd_read(self.fd)))

    def _detach(self):
        if not self.closed:
            self._ctx._remove_reader(self.fd)
            os.close(self.fd)
            self.closed = True

    def fire(self, value: int = 1) -> None:
        os.eventfd_write(self.fd, value)


def started(ctx, name="m"):
    mod = ctx.register(Recorder(name))
    mod.start()
    return mod


def spin(ctx, rounds=3):
    for _ in range(rounds):
        ctx.dispatch()


def test_norm_events_are_delivered_at_once_without_batching():
    ctx = md.Context("norm")
    mod = started(ctx)
    src = mod.register(EventFd("a"))

    src.fire(5)
    spin(ctx)

    assert [ev.data for ev in mod.events] == [("a", 5)]
    assert mod.events[0].type is md.SrcType.FD


def test_low_priority_events_wait_for_a_higher_priority_flush():
    ctx = md.Context("low")
    mod = started(ctx)
    low = mod.register(EventFd("low"), flags=md.SrcFlag.PRIO_LOW)
    high = mod.register(EventFd("high"), flags=md.SrcFlag.PRIO_HIGH)

    low.fire()
    spin(ctx)
    assert mod.events == []
    high.fire()
    spin(ctx)

    assert [ev.data[0] for ev in mod.batches[0]] == ["low", "high"]


def test_batch_set_delivers_when_size_is_reached():
    ctx = md.Context("batch")
    mod = started(ctx)
    mod.batch_set(3, 10_000_000_000)

    for i in range(2):
        mod.tell(mod, i)
    spin(ctx)
    assert mod.batches == []
    mod.tell(mod, 2)
    spin(ctx)

    assert [[ev.data.message for ev in b] for b in mod.batches] == [[0, 1, 2]]


def test_batch_set_delivers_a_partial_batch_after_the_timeout():
    ctx = md.Context("timeout")
    got = []

    def start(m):
        m.batch_set(100, 20_000_000)
        m.tell(m, "only")

    def evt(m, evs):
        got.append((time.monotonic_ns() - evs[0].ts, [e.data.message for e in evs]))
        m.ctx.quit()

    ctx.register(Recorder("m", start=start, evt=evt))
    ctx.loop()

    waited, batch = got[0]
    assert batch == ["only"]
    assert waited >= 20_000_000


def test_high_priority_flushes_a_pending_batch():
    ctx = md.Context("hflush")
    mod = started(ctx)
    mod.batch_set(100, 10_000_000_000)
    high = mod.register(EventFd("h"), flags=md.SrcFlag.PRIO_HIGH)

    mod.tell(mod, "norm")
    spin(ctx)
    high.fire()
    spin(ctx)

    assert len(mod.batches) == 1
    assert [ev.type for ev in mod.batches[0]] == [md.SrcType.PS, md.SrcType.FD]


def test_batch_size_zero_turns_batching_off_and_flushes():
    ctx = md.Context("off")
    mod = started(ctx)
    mod.batch_set(10, 10_000_000_000)
    mod.tell(mod, 1)
    spin(ctx)

    mod.batch_set(0, 0)
    spin(ctx)

    assert mod.messages == [1]
    with pytest.raises(md.InvalidArgument):
        mod.batch_set(-1, 0)
    with pytest.raises(md.InvalidArgument, match="timeout"):
        mod.batch_set(5, 0)


def test_token_bucket_limits_the_modules_own_calls_only():
    ctx = md.Context("tb")
    mod = started(ctx)
    src = mod.register(EventFd("a"))
    mod.tb_set(1, 3)

    mod.tell(mod, 1)
    mod.subscribe("x")
    mod.publish("x", 2)
    with pytest.raises(md.RateLimited, match="rate limit"):
        mod.tell(mod, 3)
    for _ in range(5):
        src.fire()
        spin(ctx, 1)

    assert len([e for e in mod.events if e.type is md.SrcType.FD]) == 5
    assert mod.messages == [1, 2]
    mod.tb_set(0, 0)
    mod.tell(mod, 4)
    with pytest.raises(md.InvalidArgument):
        mod.tb_set(5, 0)


def test_token_bucket_refills_over_time():
    ctx = md.Context("refill")
    mod = started(ctx)
    mod.tb_set(1000, 1)

    mod.tell(mod, 1)
    with pytest.raises(md.RateLimited):
        mod.tell(mod, 2)
    time.sleep(0.01)
    mod.tell(mod, 3)


def test_oneshot_source_is_deregistered_after_its_first_event():
    ctx = md.Context("oneshot")
    mod = started(ctx)
    src = mod.register(EventFd("a"), flags=md.SrcFlag.ONESHOT)

    src.fire()
    spin(ctx)

    assert len(mod.events) == 1
    assert mod.sources() == []
    assert src.closed


def test_same_key_raises_already_registered_unless_forced():
    ctx = md.Context("keys")
    mod = started(ctx)
    first = mod.register(EventFd("k"))

    with pytest.raises(md.AlreadyRegistered, match="FORCE"):
        mod.register(EventFd("k"))
    second = mod.register(EventFd("k"), flags=md.SrcFlag.FORCE)

    assert first.closed
    assert mod.sources() == [second]
    assert mod.sources(md.SrcType.FD) == [second]
    assert mod.sources(md.SrcType.TIMER) == []


def test_per_type_flags_above_bit_32_are_kept_and_checked():
    ctx = md.Context("bits")
    mod = started(ctx)

    src = mod.register(EventFd("a"), flags=md.SrcFlag.FD_AUTOCLOSE)
    assert src.flags & md.SrcFlag.FD_AUTOCLOSE
    assert int(md.SrcFlag.FD_AUTOCLOSE) > 2**32 - 1
    with pytest.raises(md.InvalidArgument, match="TMR_ABSOLUTE"):
        mod.register(EventFd("b"), flags=md.SrcFlag.TMR_ABSOLUTE)
    assert [s.key for s in mod.sources()] == ["a"]


def test_stop_releases_sources_subscriptions_stash_and_limits():
    ctx = md.Context("reset")
    mod = started(ctx)
    src = mod.register(EventFd("a"))
    mod.subscribe("t")
    mod.batch_set(5, 1_000_000)
    mod.tb_set(10, 10)

    mod.stop()
    mod.start()

    assert src.closed
    dump = mod.dump()
    assert dump["sources"] == [] and dump["subscriptions"] == []
    assert dump["batch"] == {"size": 0, "timeout_ns": 0}
    assert dump["rate_limit"] is None


def test_register_and_deregister_check_their_arguments():
    ctx = md.Context("args")
    mod = started(ctx)

    with pytest.raises(md.InvalidArgument):
        mod.register("not a source")  # type: ignore[arg-type]
    with pytest.raises(md.NotFound):
        mod.deregister(EventFd("never"))
    src = mod.register(EventFd("x"))
    with pytest.raises(md.InvalidArgument, match="already registered"):
        started(ctx, "other").register(src)


def test_a_failing_attach_leaves_nothing_registered():
    class Broken(EventFd):
        def _attach(self):
            raise md.SourceUnavailable("broken: the kernel lacks it")

    ctx = md.Context("fail")
    mod = started(ctx)

    with pytest.raises(md.SourceUnavailable):
        mod.register(Broken("b"))
    assert mod.sources() == []
    mod.register(Broken.__mro__[1]("b"))


def test_large_backlog_is_delivered_in_bounded_batches_in_order():
    ctx = md.Context("big")
    mod = started(ctx)
    n = md.module.MAX_BATCH * 2 + 10

    for i in range(n):
        mod.tell(mod, i)
    spin(ctx, 5)

    assert max(len(b) for b in mod.batches) == md.module.MAX_BATCH
    assert mod.messages == list(range(n))


def test_flags_are_checked_per_source_type_and_priority():
    ctx = md.Context("flagcheck")
    mod = started(ctx)

    with pytest.raises(md.InvalidArgument, match="one priority"):
        mod.register(EventFd("a"), flags=md.SrcFlag.PRIO_LOW | md.SrcFlag.PRIO_HIGH)
    with pytest.raises(md.InvalidArgument, match="DUP"):
        mod.register(md.Timer(1_000_000), flags=md.SrcFlag.DUP)
    with pytest.raises(md.InvalidArgument):
        mod.register(EventFd("b"), flags=md.SrcFlag(1 << 40))
    with pytest.raises(md.InvalidArgument, match="priority"):
        mod.subscribe("t", flags=md.SrcFlag.ONESHOT)
    with pytest.raises(md.InvalidArgument):
        mod.deregister(5)  # type: ignore[arg-type]
    assert mod.sources() == []


def test_module_context_and_task_arguments_are_checked():
    with pytest.raises(md.InvalidArgument, match="ModFlag"):
        Recorder("m", flags=md.ModFlag.PERSIST | (1 << 20))
    with pytest.raises(md.InvalidArgument, match="persist"):
        md.Context("c", persist="no")  # type: ignore[arg-type]
    ctx = md.Context("q", persist=True)
    with pytest.raises(md.InvalidArgument, match=r"0..255"):
        ctx.quit(2**40)
    with pytest.raises(md.InvalidArgument, match="without arguments"):
        md.Task(lambda a: a, 1)
