"""Signal sources on real signalfds and real signals to this process."""

from __future__ import annotations

import os
import signal

import pytest

import moduled as md

from .helpers import Probe, run


def _blocked() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_signal_arrives_as_an_event_and_does_not_kill_the_process():
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # would kill us

    def start(m):
        m.register(md.Signal(signal.SIGUSR1))
        os.kill(os.getpid(), signal.SIGUSR1)

    probe = Probe(start, lambda m, evs: m.ctx.quit(0))

    assert run(probe) == 0

    assert probe.of(md.SrcType.SIGNAL) == [md.SignalEvent(signal.SIGUSR1)]


def test_detach_restores_the_signal_mask():
    before = _blocked()

    def start(m):
        src = m.register(md.Signal(signal.SIGUSR2))
        m.state_["during"] = _blocked()
        m.deregister(src)
        m.state_["after"] = _blocked()
        m.ctx.quit(0)

    probe = Probe(start)

    assert run(probe) == 0

    assert signal.SIGUSR2 in probe.state_["during"]
    assert signal.SIGUSR2 not in probe.state_["after"]
    assert _blocked() == before


def test_signal_pending_at_detach_is_drained_instead_of_killing_us():
    def start(m):
        src = m.register(md.Signal(signal.SIGUSR1))
        os.kill(os.getpid(), signal.SIGUSR1)  # pending: nobody read it yet
        m.deregister(src)
        m.ctx.quit(0)

    probe = Probe(start)

    assert run(probe) == 0  # still alive

    assert probe.of(md.SrcType.SIGNAL) == []


def test_queued_realtime_signals_are_all_read_in_one_wakeup():
    rt = signal.SIGRTMIN + 2

    def start(m):
        m.register(md.Signal(rt))
        for _ in range(3):
            os.kill(os.getpid(), rt)

    probe = Probe(start, lambda m, evs: m.ctx.quit(0))

    assert run(probe) == 0

    assert probe.of(md.SrcType.SIGNAL) == [md.SignalEvent(rt)] * 3


def test_two_modules_share_a_blocked_signal_until_the_last_detaches():
    def first(m):
        m.state_["a"] = m.register(md.Signal(signal.SIGWINCH))

    def second(m):
        src = m.register(md.Signal(signal.SIGWINCH))
        other = m.lookup("a").state_["a"]
        other.module.deregister(other)
        m.state_["one_left"] = signal.SIGWINCH in _blocked()
        m.deregister(src)
        m.state_["none_left"] = signal.SIGWINCH in _blocked()
        m.ctx.quit(0)

    a, b = Probe(first, name="a"), Probe(second, name="b")

    assert run(a, b) == 0

    assert b.state_["one_left"] is True
    assert b.state_["none_left"] is False


@pytest.mark.parametrize(
    "signo", [0, -1, signal.NSIG, signal.SIGKILL, signal.SIGSTOP, "HUP", True, 1.0]
)
def test_signal_rejects_a_bad_or_unblockable_signal(signo):
    with pytest.raises(md.InvalidArgument):
        md.Signal(signo)


def test_unblock_signals_gives_children_a_clean_mask():
    import subprocess

    from moduled.sources.signal import unblock_signals

    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        blocked = subprocess.run(
            ["grep", "SigBlk", "/proc/self/status"], capture_output=True, text=True
        ).stdout
        clean = subprocess.run(
            ["grep", "SigBlk", "/proc/self/status"],
            capture_output=True,
            text=True,
            preexec_fn=unblock_signals,
        ).stdout
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

    assert int(blocked.split()[1], 16) & (1 << (signal.SIGTERM - 1))
    assert int(clean.split()[1], 16) == 0
