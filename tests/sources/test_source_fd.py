"""Fd sources on real pipes and sockets."""

from __future__ import annotations

import contextlib
import os
import socket

import pytest

import moduled as md

from .helpers import Probe, run


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):  # the test closed it on purpose
            os.close(fd)


def test_readable_fd_is_reported_and_the_module_reads_it(pipe):
    r, w = pipe

    def start(m):
        m.state_["src"] = m.register(md.Fd(r))
        os.write(w, b"hi")

    def evt(m, events):
        m.state_["data"] = os.read(events[0].data.fd, 10)
        m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    assert probe.of(md.SrcType.FD) == [md.FdEvent(r)]
    assert probe.state_["data"] == b"hi"
    assert probe.state_["src"].flags & md.SrcFlag.PRIO_HIGH


def test_an_object_with_fileno_is_accepted():
    a, b = socket.socketpair()
    fd = a.fileno()

    def start(m):
        m.register(md.Fd(a))
        b.send(b"x")

    probe = Probe(start, lambda m, e: m.ctx.quit(0))

    try:
        assert run(probe) == 0
    finally:
        a.close()
        b.close()

    assert probe.of(md.SrcType.FD) == [md.FdEvent(fd)]


def test_dup_watches_a_copy_that_is_closed_on_detach(pipe):
    r, w = pipe

    def start(m):
        src = m.register(md.Fd(r), flags=md.SrcFlag.DUP)
        m.state_["watched"] = src.dump()["watched_fd"]
        os.write(w, b"x")

    def evt(m, events):
        m.deregister(m.sources(md.SrcType.FD)[0])
        m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    dup = probe.state_["watched"]
    assert dup != r
    assert probe.of(md.SrcType.FD) == [md.FdEvent(dup)]
    os.fstat(r)  # the caller's fd is untouched
    with pytest.raises(OSError):
        os.fstat(dup)


def test_autoclose_closes_the_fd_on_deregistration(pipe):
    r, _w = pipe

    def start(m):
        src = m.register(md.Fd(r), flags=md.SrcFlag.FD_AUTOCLOSE)
        m.deregister(src)
        m.ctx.quit(0)

    assert run(Probe(start)) == 0

    with pytest.raises(OSError):
        os.fstat(r)


def test_paused_module_stops_watching_so_the_loop_does_not_spin(pipe):
    r, w = pipe

    def start(m):
        m.state_["src"] = m.register(md.Fd(r))
        m.state_["waker"] = m.lookup("waker")
        os.write(w, b"x")

    def evt(m, events):
        if m.state_.get("resumed"):
            os.read(r, 10)
            m.ctx.quit(0)
            return
        m.pause()  # leave the byte unread while paused
        m.state_["waker"].register(md.Timer(50_000_000), flags=md.SrcFlag.ONESHOT)
        m.state_["emitted_at_pause"] = m.state_["src"].events

    def wake(m, events):
        probe = m.lookup("probe")
        probe.state_["emitted_while_paused"] = (
            probe.state_["src"].events - probe.state_["emitted_at_pause"]
        )
        probe.state_["watching"] = probe.state_["src"].dump()["watching"]
        probe.state_["resumed"] = True
        probe.resume()

    waker = Probe(lambda m: None, wake, name="waker")
    probe = Probe(start, evt)

    assert run(waker, probe) == 0

    # Level-triggered: without unwatching, every poll in those 50 ms would
    # have queued another event.
    assert probe.state_["emitted_while_paused"] <= 1
    assert probe.state_["watching"] is False
    assert len(probe.of(md.SrcType.FD)) >= 2  # watched again after resume


def _unused_fd() -> int:
    fd = 4000
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


def test_a_closed_fd_is_refused_at_registration():
    fd = _unused_fd()

    def start(m):
        with pytest.raises(md.InvalidArgument, match="not an open file"):
            m.register(md.Fd(fd))
        m.state_["left"] = m.sources()
        m.ctx.quit(0)

    probe = Probe(start)

    assert run(probe) == 0
    assert probe.state_["left"] == []


def test_a_regular_file_is_refused_because_it_cannot_be_polled(tmp_path):
    with open(tmp_path / "f", "w") as f:

        def start(m):
            with pytest.raises(md.InvalidArgument, match="cannot be polled"):
                m.register(md.Fd(f))
            m.ctx.quit(0)

        assert run(Probe(start)) == 0


def test_a_closed_file_object_is_refused(tmp_path):
    f = open(tmp_path / "x", "w")  # noqa: SIM115 - closed on purpose
    f.close()

    with pytest.raises(md.InvalidArgument, match="fileno"):
        md.Fd(f)


@pytest.mark.parametrize("value", [-1, True, 1.5, "0", None, object()])
def test_fd_rejects_what_is_not_an_fd(value):
    with pytest.raises(md.InvalidArgument):
        md.Fd(value)
