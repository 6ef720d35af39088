from __future__ import annotations

import pytest

import moduled as md

from .helpers import Recorder, run


def make(ctx, name, **kw):
    mod = ctx.register(Recorder(name, **kw))
    mod.start()
    return mod


def test_tell_by_name_and_by_object_reaches_only_the_recipient():
    ctx = md.Context("tell")
    a, b, c = (make(ctx, n) for n in "abc")

    a.tell("b", "by name")
    a.tell(b, "by object")
    ctx.dispatch()
    ctx.dispatch()

    assert b.messages == ["by name", "by object"]
    assert c.messages == []
    ev = b.events[0]
    assert ev.type is md.SrcType.PS
    assert ev.data.sender is a
    assert ev.data.topic is None
    assert ev.ts > 0 and ev.replayed is False


def test_tell_to_unknown_or_stopped_modules_raises():
    ctx = md.Context("bad", persist=True)
    a = make(ctx, "a")
    idle = ctx.register(Recorder("idle"))

    with pytest.raises(md.NotFound, match="ghost"):
        a.tell("ghost", 1)
    with pytest.raises(md.StateError, match="idle"):
        a.tell(idle, 1)
    with pytest.raises(md.InvalidArgument):
        a.tell(42, 1)  # type: ignore[arg-type]
    other_ctx = md.Context("other", persist=True)
    stranger = make(other_ctx, "stranger")
    with pytest.raises(md.NotFound):
        a.tell(stranger, 1)


def test_publish_reaches_exact_and_regex_subscribers_with_one_message_object():
    ctx = md.Context("pub")
    exact = make(ctx, "exact")
    exact.subscribe("news/sport")
    regex = make(ctx, "regex")
    regex.subscribe("news/.*")
    other = make(ctx, "other")
    other.subscribe("weather")
    pub = make(ctx, "pub")

    payload = {"score": 3}
    n = pub.publish("news/sport", payload)
    pub.publish("news/politics", "p")
    ctx.dispatch()
    ctx.dispatch()

    assert n == 2
    assert exact.messages == [payload]
    assert regex.messages == [payload, "p"]
    assert other.messages == []
    assert exact.events[0].data is regex.events[0].data
    assert exact.events[0].data.message is payload
    assert exact.events[0].data.topic == "news/sport"


def test_regex_subscription_must_match_the_whole_topic():
    ctx = md.Context("full")
    sub = make(ctx, "sub")
    sub.subscribe("a.c")
    pub = make(ctx, "pub")

    pub.publish("abc", 1)
    pub.publish("abcd", 2)
    pub.publish("xabc", 3)
    ctx.dispatch()

    assert sub.messages == [1]


def test_subscribe_again_updates_and_unsubscribe_stops_delivery():
    ctx = md.Context("resub")
    sub = make(ctx, "sub")
    sub.subscribe("t", userdata="first")
    sub.subscribe("t", userdata="second")
    pub = make(ctx, "pub")

    pub.publish("t", 1)
    ctx.dispatch()
    sub.unsubscribe("t")
    pub.publish("t", 2)
    ctx.dispatch()

    assert sub.messages == [1]
    assert sub.events[0].userdata == "second"
    with pytest.raises(md.NotFound):
        sub.unsubscribe("t")


def test_bad_patterns_and_topics_raise_invalid_argument():
    ctx = md.Context("badpat", persist=True)
    mod = make(ctx, "m")

    with pytest.raises(md.InvalidArgument, match="regular expression"):
        mod.subscribe("a(b")
    with pytest.raises(md.InvalidArgument):
        mod.subscribe("")
    with pytest.raises(md.InvalidArgument):
        mod.subscribe(3)  # type: ignore[arg-type]
    with pytest.raises(md.InvalidArgument):
        mod.publish("", 1)
    with pytest.raises(md.InvalidArgument):
        mod.publish(None, 1)  # type: ignore[arg-type]


def test_system_topics_are_reserved():
    ctx = md.Context("sys", persist=True)
    mod = make(ctx, "m")

    with pytest.raises(md.PermissionDenied, match="reserved"):
        mod.publish(md.MOD_STARTED, 1)
    with pytest.raises(md.PermissionDenied):
        mod.publish("MODULED_anything", 1)


def test_mod_started_and_stopped_name_the_module_as_sender():
    ctx = md.Context("modsys", persist=True)
    watcher = make(ctx, "watcher")
    watcher.subscribe("MODULED_MOD_.*")
    other = ctx.register(Recorder("other"))

    other.start()
    other.stop()
    ctx.dispatch()
    ctx.dispatch()

    got = [(ev.data.topic, ev.data.sender) for ev in watcher.events]
    assert got == [(md.MOD_STARTED, other), (md.MOD_STOPPED, other)]


def test_broadcast_reaches_every_other_live_module():
    ctx = md.Context("bc")
    a, b, c = (make(ctx, n) for n in "abc")
    c.pause()
    ctx.register(Recorder("idle"))

    assert a.broadcast("hello") == 2
    ctx.dispatch()
    c.resume()
    ctx.dispatch()

    assert a.messages == []
    assert b.messages == ["hello"]
    assert c.messages == ["hello"]


def test_paused_module_queues_messages_until_resumed():
    ctx = md.Context("pause")
    a = make(ctx, "a")
    b = make(ctx, "b")
    b.pause()

    for i in range(3):
        a.tell("b", i)
    ctx.dispatch()
    ctx.dispatch()
    assert b.messages == []
    b.resume()
    ctx.dispatch()

    assert b.messages == [0, 1, 2]


def test_poison_pill_stops_after_earlier_messages():
    ctx = md.Context("pill")
    a = make(ctx, "a")
    b = make(ctx, "b")

    a.tell("b", 1)
    a.tell("b", 2)
    a.poisonpill("b")
    ctx.dispatch()
    ctx.dispatch()

    assert b.messages == [1, 2]
    assert b.state is md.ModState.STOPPED
    with pytest.raises(md.StateError):
        a.tell("b", 3)


def test_mailbox_limit_refuses_sends_over_the_limit_and_counts_them():
    ctx = md.Context("mbox")
    a = make(ctx, "a")
    b = make(ctx, "b")
    b.subscribe("t")
    b.mailbox_set(2)

    a.tell("b", 1)
    a.publish("t", 2)
    with pytest.raises(md.RateLimited, match="mailbox"):
        a.tell("b", 3)
    with pytest.raises(md.RateLimited):
        a.publish("t", 4)
    with pytest.raises(md.RateLimited):
        a.broadcast(5)
    ctx.dispatch()
    a.tell("b", 6)
    ctx.dispatch()

    assert b.messages == [1, 2, 6]
    assert b.stats().refused_msgs == 3
    with pytest.raises(md.InvalidArgument):
        b.mailbox_set(-1)


def test_publish_does_not_scan_unrelated_regex_subscriptions():
    ctx = md.Context("scan")
    subs = [make(ctx, f"m{i}") for i in range(50)]
    for i, m in enumerate(subs):
        m.subscribe(f"topic/{i}/.*")
    near = make(ctx, "near")
    near.subscribe("fresh/.+")
    target = make(ctx, "target")
    target.subscribe("exact")
    pub = make(ctx, "pub")
    calls: list[str] = []
    for sub in ctx._topics._regex:
        sub.regex = _CountingRegex(sub.regex, calls)

    for i in range(100):
        pub.publish("exact", i)
        pub.publish(f"fresh/{i}", i)  # a new topic each time: no cache help
    ctx.dispatch()

    assert len(target.messages) == 100
    assert len(near.messages) == 100
    assert calls == [f"fresh/{i}" for i in range(100)]  # only the candidate


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("news/.*", "news/"),
        ("a.c", "a"),
        ("ab*c", "a"),
        ("ab?", "a"),
        ("ab{2}", "a"),
        ("ab+", "ab"),
        ("x|y", ""),
        ("(?i)abc", ""),
        (r"a\.b", "a"),
        (".*", ""),
    ],
)
def test_literal_prefix_is_what_every_match_starts_with(pattern, prefix):
    from moduled.pubsub import literal_prefix

    assert literal_prefix(pattern) == prefix


class _CountingRegex:
    def __init__(self, regex, calls):
        self._regex = regex
        self._calls = calls

    def fullmatch(self, topic):
        self._calls.append(topic)
        return self._regex.fullmatch(topic)


def test_run_helper_drives_to_completion():
    ctx = md.Context("runner")
    make(ctx, "a", evt=lambda m, e: m.ctx.quit())
    ctx.lookup("a").tell("a", 1)

    run(ctx)

    assert not ctx.looping
