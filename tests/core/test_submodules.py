from __future__ import annotations

import pytest

import moduled as md

from .helpers import Recorder


def test_child_follows_its_parents_state_and_receives_forwards():
    ctx = md.Context("sub", persist=True)
    parent = ctx.register(Recorder("parent"))
    a = ctx.register(Recorder("a"), parent="parent")
    b = ctx.register(Recorder("b"), parent=parent)

    ctx.dispatch()
    assert parent.state is a.state is b.state is md.ModState.RUNNING
    assert parent.children == (a, b) and a.parent is parent

    assert parent.forward("to the kids") == 2
    ctx.dispatch()
    assert a.messages == b.messages == ["to the kids"]
    assert parent.messages == []

    parent.pause()
    assert a.state is md.ModState.PAUSED
    parent.resume()
    parent.stop()
    assert b.state is md.ModState.STOPPED


def test_child_waits_for_a_parent_registered_later():
    ctx = md.Context("wait", persist=True)
    child = ctx.register(Recorder("child"), parent="later")
    ctx.dispatch()
    assert child.state is md.ModState.IDLE

    parent = ctx.register(Recorder("later"))
    ctx.dispatch()

    assert child.parent is parent
    assert child.state is md.ModState.RUNNING


def test_children_are_deregistered_with_their_parent():
    ctx = md.Context("dereg", persist=True)
    ctx.register(Recorder("root"))
    mid = ctx.register(Recorder("mid"), parent="root")
    leaf = ctx.register(Recorder("leaf"), parent="mid")
    ctx.dispatch()

    ctx.deregister("root")

    assert mid.state is leaf.state is md.ModState.ZOMBIE
    assert list(ctx.modules) == []


def test_a_persistent_child_protects_its_parent_while_looping():
    ctx = md.Context("persist")
    ctx.register(Recorder("parent"))
    ctx.register(Recorder("child", flags=md.ModFlag.PERSIST), parent="parent")
    errors = []

    def start(m):
        try:
            m.ctx.deregister("parent")
        except md.PermissionDenied as exc:
            errors.append(exc)
        m.ctx.quit()

    ctx.register(Recorder("killer", start=start))
    ctx.loop()

    assert "child" in str(errors[0])
    assert ctx.lookup("parent") is not None


def test_bad_parents_are_refused():
    ctx = md.Context("bad", persist=True)
    other = md.Context("other", persist=True)
    stranger = other.register(Recorder("stranger"))

    with pytest.raises(md.InvalidArgument):
        ctx.register(Recorder("self"), parent="self")
    with pytest.raises(md.InvalidArgument):
        ctx.register(Recorder("x"), parent=3)  # type: ignore[arg-type]
    with pytest.raises(md.InvalidArgument, match="other"):
        ctx.register(Recorder("y"), parent=stranger)
    assert list(ctx.modules) == []
