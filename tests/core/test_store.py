from __future__ import annotations

import os
import sqlite3
import threading

import pytest

import moduled as md

from .helpers import Recorder


def record_session(path):
    """A context that tells, publishes and times out, recording it all."""
    ctx = md.Context("rec")
    ctx.store(path)

    def start(m):
        m.subscribe("news/.*", userdata={"sub": 1})
        m.register(
            md.Timer(
                1_000_000,
            ),
            flags=md.SrcFlag.ONESHOT,
        )
        rfd, wfd = os.pipe()
        m._pipe = (rfd, wfd)
        m.register(md.Fd(rfd), flags=md.SrcFlag.FD_AUTOCLOSE)
        os.write(wfd, b"x")

    def evt(m, evs):
        for ev in evs:
            if ev.type is md.SrcType.FD:
                os.read(ev.data.fd, 1)
        if (
            sum(1 for e in m.events if e.type is md.SrcType.TIMER)
            and len(m.events) >= 4
        ):
            os.close(m._pipe[1])
            m.ctx.quit()

    rec = ctx.register(Recorder("target", start=start, evt=evt))
    sender = ctx.register(
        Recorder(
            "sender",
            start=lambda m: (
                m.tell("target", {"n": 1}),
                m.publish("news/x", [1, 2]),
            ),
        )
    )
    ctx.loop()
    return rec, sender


def test_recorded_events_are_replayed_to_the_same_named_module_first(tmp_path):
    path = tmp_path / "events.db"
    original, _ = record_session(path)

    ctx = md.Context("play")
    ctx.replay_from(path)
    seen_before_poll = []

    def start(m):
        m.tell(m, "live")

    def evt(m, evs):
        if not seen_before_poll:
            seen_before_poll.extend(evs)
        if any(not e.replayed for e in m.events):
            m.ctx.quit()

    replayed = ctx.register(Recorder("target", start=start, evt=evt))
    ctx.register(Recorder("other"))
    ctx.loop()

    recorded = [e for e in original.events if e.type is not md.SrcType.FD]
    again = [e for e in replayed.events if e.replayed]
    assert [e.type for e in again] == [e.type for e in recorded]
    assert [e.ts for e in again] == [e.ts for e in recorded]
    tell = next(e for e in again if e.type is md.SrcType.PS and e.data.topic is None)
    assert tell.data == md.PsMessage("sender", None, {"n": 1})
    pub = next(e for e in again if e.type is md.SrcType.PS and e.data.topic)
    assert pub.data.message == [1, 2] and pub.userdata == {"sub": 1}
    timer = next(e for e in again if e.type is md.SrcType.TIMER)
    assert timer.data.expirations >= 1
    flags = [e.replayed for e in replayed.events]
    assert flags == sorted(flags, reverse=True)  # every replayed one comes first
    assert seen_before_poll[0].replayed
    assert replayed.messages[-1] == "live"
    assert ctx.dump()["replay"] == {"replayed": len(recorded), "skipped": 0}


def test_events_for_missing_modules_are_skipped_and_counted(tmp_path):
    path = tmp_path / "events.db"
    record_session(path)

    ctx = md.Context("play")
    ctx.replay_from(path)
    ctx.register(Recorder("bystander", start=lambda m: m.ctx.quit()))
    ctx.loop()

    assert ctx.dump()["replay"]["replayed"] == 0
    assert ctx.dump()["replay"]["skipped"] >= 3


def test_unpicklable_data_is_recorded_as_its_repr(tmp_path):
    path = tmp_path / "events.db"
    ctx = md.Context("rec")
    ctx.store(path)
    lock = threading.Lock()
    ctx.register(
        Recorder("m", start=lambda m: m.tell(m, lock), evt=lambda m, e: m.ctx.quit())
    )
    ctx.loop()
    assert ctx.dump()["store"]["unpicklable"] == 1

    play = md.Context("play")
    play.replay_from(path)
    got = play.register(Recorder("m", evt=lambda m, e: m.ctx.quit()))
    play.loop()

    assert got.messages == [repr(lock)]


def test_replay_from_checks_the_file_up_front(tmp_path):
    ctx = md.Context("bad", persist=True)

    with pytest.raises(md.NotFound, match="no such file"):
        ctx.replay_from(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(md.InvalidArgument, match="recording"):
        ctx.replay_from(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(md.InvalidArgument, match="recording"):
        ctx.replay_from(other)
    with pytest.raises(md.InvalidArgument):
        ctx.store(42)  # type: ignore[arg-type]
