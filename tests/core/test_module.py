from __future__ import annotations

import json
import logging
import time

import pytest

import moduled as md

from .helpers import Recorder, run


def test_module_name_from_class_attribute_or_argument():
    class Named(md.Module):
        name = "named"

        def on_evt(self, events):
            pass

    assert Named().name == "named"
    assert Named("other").name == "other"
    with pytest.raises(md.InvalidArgument, match="name"):
        Recorder("")
    with pytest.raises(md.InvalidArgument):
        Recorder(3)  # type: ignore[arg-type]
    with pytest.raises(md.InvalidArgument, match="MODULED_"):
        Recorder("MODULED_x")


def test_state_machine_transitions_and_state_errors():
    ctx = md.Context("sm", persist=True)
    mod = ctx.register(Recorder("m"))

    assert mod.state is md.ModState.IDLE
    with pytest.raises(md.StateError, match="idle"):
        mod.pause()
    mod.start()
    assert mod.state is md.ModState.RUNNING
    with pytest.raises(md.StateError):
        mod.start()
    with pytest.raises(md.StateError):
        mod.resume()
    mod.pause()
    assert mod.state is md.ModState.PAUSED
    with pytest.raises(md.StateError):
        mod.pause()
    mod.resume()
    mod.stop()
    assert mod.state is md.ModState.STOPPED
    with pytest.raises(md.StateError):
        mod.stop()
    mod.start()
    assert mod.is_(md.ModState.RUNNING)


def test_unregistered_module_calls_raise_state_error():
    mod = Recorder("loose")

    with pytest.raises(md.StateError, match="register the module"):
        mod.start()
    with pytest.raises(md.StateError):
        mod.tell("x", 1)


def test_on_eval_delays_start_until_it_agrees():
    calls = []

    class Waiter(md.Module):
        def on_eval(self):
            calls.append("eval")
            return len(calls) >= 3

        def on_start(self):
            self.ctx.quit(5)

        def on_evt(self, events):
            pass

    class Clock(md.Module):
        def on_start(self):
            self.tell(self, 0)

        def on_evt(self, events):
            self.tell(self, 0)

    ctx = md.Context("eval")
    ctx.register(Clock("clock"))
    ctx.register(Waiter("waiter"))

    assert ctx.loop() == 5
    assert calls == ["eval"] * 3


def test_on_start_returning_false_stops_the_module():
    ctx = md.Context("nostart", persist=True)
    mod = ctx.register(Recorder("m", start=lambda m: False))
    ctx.loop()

    assert mod.state is md.ModState.STOPPED
    assert mod.failure is None


def test_module_is_running_inside_on_start_and_may_send():
    seen = []

    def start(m):
        seen.append(m.state)
        m.tell(m, "from on_start")

    ctx = md.Context("s")
    mod = ctx.register(Recorder("m", start=start, evt=lambda m, evs: m.ctx.quit()))
    ctx.loop()

    assert seen == [md.ModState.RUNNING]
    assert mod.messages == ["from on_start"]


@pytest.mark.parametrize("hook", ["on_eval", "on_start", "on_evt", "on_stop"])
def test_exception_in_a_hook_stops_only_that_module(hook, caplog):
    class Bad(md.Module):
        def on_eval(self):
            if hook == "on_eval":
                raise RuntimeError("boom in on_eval")
            return True

        def on_start(self):
            if hook == "on_start":
                raise RuntimeError("boom in on_start")
            self.tell(self, "go")

        def on_evt(self, events):
            if hook == "on_evt":
                raise RuntimeError("boom in on_evt")
            self.stop()

        def on_stop(self):
            if hook == "on_stop":
                raise RuntimeError("boom in on_stop")

    count = []

    def evt(m, evs):
        count.append(len(evs))
        if len(count) < 5:
            m.tell(m, "tick")
        else:
            m.ctx.quit(0)

    ctx = md.Context("iso", persist=True)
    bad = ctx.register(Bad("bad"))
    good = ctx.register(Recorder("good", start=lambda m: m.tell(m, "tick"), evt=evt))
    with caplog.at_level(logging.ERROR, logger="moduled"):
        assert ctx.loop() == 0

    assert len(count) == 5
    assert bad.state is md.ModState.STOPPED
    assert isinstance(bad.failure, RuntimeError)
    assert f"boom in {hook}" in str(bad.failure)
    dump = bad.dump()
    assert dump["failure"]["type"] == "RuntimeError"
    assert "Traceback" in dump["failure"]["traceback"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("bad" in r.getMessage() and hook in r.getMessage() for r in errors)
    assert any(r.exc_info for r in errors)
    assert good.state is md.ModState.STOPPED and good.failure is None


def test_restart_clears_the_failure():
    ctx = md.Context("restart", persist=True)

    class Flaky(md.Module):
        runs = 0

        def on_start(self):
            type(self).runs += 1
            if self.runs == 1:
                raise ValueError("first start fails")

        def on_evt(self, events):
            pass

    mod = ctx.register(Flaky("flaky"))
    ctx.loop()
    assert isinstance(mod.failure, ValueError)

    mod.start()

    assert mod.failure is None
    assert mod.state is md.ModState.RUNNING


def test_bind_makes_a_module_follow_another():
    ctx = md.Context("bind", persist=True)
    leader = ctx.register(Recorder("leader"))
    follower = ctx.register(Recorder("follower"))
    follower.bind("leader")

    leader.start()
    assert follower.state is md.ModState.RUNNING
    leader.pause()
    assert follower.state is md.ModState.PAUSED
    leader.resume()
    assert follower.state is md.ModState.RUNNING
    leader.stop()
    assert follower.state is md.ModState.STOPPED
    with pytest.raises(md.InvalidArgument, match="cycle"):
        leader.bind(follower)
    with pytest.raises(md.NotFound):
        follower.bind("ghost")


def test_become_and_unbecome_stack_handlers():
    ctx = md.Context("become")
    alt: list[object] = []

    def start(m):
        m.become(lambda evs: (alt.extend(e.data.message for e in evs), m.unbecome()))
        m.tell(m, "to-alt")

    def evt(m, evs):
        m.ctx.quit()

    mod = ctx.register(Recorder("m", start=start, evt=evt))
    ctx.dispatch()
    ctx.dispatch()
    mod.tell(mod, "to-main")
    run(ctx)

    assert alt == ["to-alt"]
    assert mod.messages == ["to-main"]
    with pytest.raises(md.InvalidArgument):
        mod.become(42)  # type: ignore[arg-type]


def test_unbecome_without_become_is_a_state_error():
    ctx = md.Context("ub", persist=True)
    mod = ctx.register(Recorder("m"))

    with pytest.raises(md.StateError, match="become"):
        mod.unbecome()


def test_stash_and_unstash_redeliver_oldest_first_ahead_of_newer():
    ctx = md.Context("stash")
    order: list[object] = []

    def evt(m, evs):
        for ev in evs:
            msg = ev.data.message
            if msg in ("a", "b") and not ev.userdata and m._stash_round == 0:
                m.stash(ev)
                continue
            order.append(msg)
        if m._stash_round == 0 and len(m._stash) == 2:
            m._stash_round = 1
            m.tell(m, "c")
            assert m.unstash(1) == 1
            assert m.unstash() == 1
        if order == ["a", "b", "c"]:
            m.ctx.quit()

    def start(m):
        m._stash_round = 0
        m.tell(m, "a")
        m.tell(m, "b")

    ctx.register(Recorder("m", start=start, evt=evt))
    ctx.loop()

    assert order == ["a", "b", "c"]


def test_stash_rejects_non_events_and_bad_counts():
    ctx = md.Context("st", persist=True)
    mod = ctx.register(Recorder("m"))

    with pytest.raises(md.InvalidArgument):
        mod.stash("not an event")  # type: ignore[arg-type]
    with pytest.raises(md.InvalidArgument):
        mod.unstash(-1)
    assert mod.unstash() == 0


def test_module_logger_is_named_after_context_and_module():
    ctx = md.Context("logs", persist=True)
    mod = ctx.register(Recorder("m"))

    assert mod.log.name == "moduled.logs.m"


def test_deny_flags_forbid_ctx_publish_and_subscribe():
    ctx = md.Context("deny", persist=True)
    mod = ctx.register(
        Recorder(
            "m",
            flags=md.ModFlag.DENY_CTX | md.ModFlag.DENY_PUB | md.ModFlag.DENY_SUB,
        )
    )
    other = ctx.register(Recorder("o"))
    other.start()
    mod.start()

    with pytest.raises(md.PermissionDenied, match="DENY_CTX"):
        _ = mod.ctx
    with pytest.raises(md.PermissionDenied, match="DENY_PUB"):
        mod.tell("o", 1)
    with pytest.raises(md.PermissionDenied, match="DENY_PUB"):
        mod.publish("t", 1)
    with pytest.raises(md.PermissionDenied, match="DENY_PUB"):
        mod.broadcast(1)
    with pytest.raises(md.PermissionDenied, match="DENY_SUB"):
        mod.subscribe("t")


def test_stats_count_messages_and_activity():
    ctx = md.Context("stats")

    def start(m):
        for i in range(10):
            m.tell(m, i)

    mod = ctx.register(Recorder("m", start=start, evt=lambda m, e: m.ctx.quit()))
    ctx.register(Recorder("keep"))
    ctx.loop()
    ctx.deregister("keep")
    mod2 = md.Context("s2", persist=True).register(Recorder("fresh"))
    stats = mod.stats() if mod.state is not md.ModState.ZOMBIE else None

    assert stats is not None
    assert stats.sent_msgs == 10
    assert stats.recv_msgs == 10
    assert stats.activity_freq > 0
    assert stats.inactive_ms >= 0
    assert mod2.stats().recv_msgs == 0


def test_dump_is_json_serialisable_and_describes_the_module():
    ctx = md.Context("dump", persist=True)
    mod = ctx.register(Recorder("m"))
    mod.start()
    mod.subscribe("a/.*")
    mod.batch_set(4, 1_000_000)
    mod.mailbox_set(10)

    dump = mod.dump()

    json.dumps(dump)
    assert dump["state"] == "running"
    assert dump["subscriptions"][0]["pattern"] == "a/.*"
    assert dump["batch"] == {"size": 4, "timeout_ns": 1_000_000}
    assert dump["mailbox_limit"] == 10
    assert dump["failure"] is None


def test_system_exit_in_a_hook_stops_only_the_module():
    def evt(m, evs):
        raise SystemExit(3)

    ctx = md.Context("sysexit", persist=True)
    bad = ctx.register(Recorder("bad", start=lambda m: m.tell(m, 1), evt=evt))
    ctx.register(
        Recorder("good", start=lambda m: m.tell(m, 1), evt=lambda m, e: m.ctx.quit(4))
    )

    assert ctx.loop() == 4
    assert isinstance(bad.failure, SystemExit)


def test_failing_on_eval_publishes_mod_stopped():
    seen = []

    class BadEval(md.Module):
        def on_eval(self):
            raise RuntimeError("cannot evaluate")

        def on_evt(self, events):
            pass

    def evt(m, evs):
        seen.extend((ev.data.topic, ev.data.sender.name) for ev in evs)
        m.ctx.quit()

    ctx = md.Context("evalfail")
    ctx.register(
        Recorder("watch", start=lambda m: m.subscribe(md.MOD_STOPPED), evt=evt)
    )
    bad = ctx.register(BadEval("bad"))
    ctx.loop()

    assert seen == [(md.MOD_STOPPED, "bad")]
    assert isinstance(bad.failure, RuntimeError)


def test_loop_exit_does_not_wait_forever_for_chatty_modules():
    delivered = []

    def evt(m, evs):
        delivered.append(len(evs))
        time.sleep(0.001)  # each delivery is slow: the flush is time-bounded
        m.tell(m, 0)

    ctx = md.Context("chatty")
    ctx.register(Recorder("chatty", start=lambda m: m.tell(m, 0), evt=evt))
    ctx.register(Recorder("quitter", start=lambda m: m.ctx.quit(2)))

    assert ctx.loop() == 2
    # The flush gave up on time, long before its delivery budget ran out.
    assert len(delivered) < md.context.FLUSH_BUDGET // 10


def test_a_context_may_widen_what_hooks_are_allowed_to_raise():
    def evt(m, evs):
        raise KeyboardInterrupt

    ctx = md.Context("wide", persist=True)
    ctx._hook_errors = (Exception, SystemExit, KeyboardInterrupt)
    bad = ctx.register(Recorder("bad", start=lambda m: m.tell(m, 1), evt=evt))
    ctx.register(
        Recorder("good", start=lambda m: m.tell(m, 1), evt=lambda m, e: m.ctx.quit(8))
    )

    assert ctx.loop() == 8
    assert isinstance(bad.failure, KeyboardInterrupt)
