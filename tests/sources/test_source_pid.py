"""Pid sources on real pidfds and real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import moduled as md

from .helpers import Probe, run


def _quit(m, events):
    m.ctx.quit(0)


def test_exit_status_of_our_child_is_reported_and_the_child_reaped():
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])

    def start(m):
        m.state_["src"] = m.register(md.Pid(child.pid))

    probe = Probe(start, _quit)

    assert run(probe) == 0

    assert probe.of(md.SrcType.PID) == [md.PidEvent(child.pid, 7)]
    with pytest.raises(ChildProcessError):  # reaped by the source
        os.waitpid(child.pid, 0)
    assert probe.state_["src"].module is None  # one-shot: deregistered
    child.returncode = 7  # keep Popen from waiting on a reaped pid


def test_a_child_killed_by_a_signal_reports_minus_the_signal():
    child = subprocess.Popen(["sleep", "30"])

    def start(m):
        m.register(md.Pid(child.pid))
        child.send_signal(signal.SIGTERM)

    probe = Probe(start, _quit)

    assert run(probe) == 0

    assert probe.of(md.SrcType.PID) == [md.PidEvent(child.pid, -signal.SIGTERM)]
    child.returncode = -signal.SIGTERM


def test_a_process_that_is_not_our_child_reports_no_status():
    # The shell starts a sleep in the background and exits at once: the
    # sleep is re-parented, so we may watch it but not reap it.
    out = subprocess.run(
        ["sh", "-c", "sleep 0.3 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = int(out.stdout)

    probe = Probe(lambda m: m.register(md.Pid(orphan)), _quit)

    assert run(probe) == 0

    assert probe.of(md.SrcType.PID) == [md.PidEvent(orphan, None)]


def test_a_process_that_no_longer_exists_is_not_found():
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: the pid is free

    def start(m):
        with pytest.raises(md.NotFound, match="no such process"):
            m.register(md.Pid(gone.pid))
        m.state_["left"] = m.sources()
        m.ctx.quit(0)

    probe = Probe(start)

    assert run(probe) == 0
    assert probe.state_["left"] == []


@pytest.mark.parametrize("pid", [0, -1, True, "1", 1.0, None])
def test_pid_rejects_a_value_that_is_not_a_positive_int(pid):
    with pytest.raises(md.InvalidArgument):
        md.Pid(pid)
