"""modulectl against a real daemon: output, JSON shapes and exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from .conftest import PY, wait_for, write

COUNTER = """
import moduled as md

class Counter(md.Module):
    name = "counter"

    def on_start(self):
        self.register(md.Timer(20_000_000))

    def on_evt(self, events):
        self.publish("counter/tick", len(events))
"""


def _counter(d):
    if d.module("counter") is None:
        write(d.plugins / "counter.py", COUNTER)
    return wait_for(lambda: (m := d.module("counter")) and m["state"] != "idle" and m)


def test_pause_and_resume_through_modulectl(shared_daemon):
    _counter(shared_daemon)

    paused = shared_daemon.ctl("pause", "counter")
    state_paused = shared_daemon.module("counter")["state"]
    recv = shared_daemon.module("counter")["recv"]
    time.sleep(0.2)
    recv_while_paused = shared_daemon.module("counter")["recv"]
    resumed = shared_daemon.ctl("resume", "counter")

    assert (paused.returncode, paused.stdout) == (0, "counter: paused\n")
    assert state_paused == "paused"
    assert recv_while_paused == recv  # events queue up, none delivered
    assert (resumed.returncode, resumed.stdout) == (0, "counter: resumed\n")
    wait_for(lambda: shared_daemon.module("counter")["recv"] > recv)


def test_wrong_state_is_an_error_reply_with_exit_code_1(shared_daemon):
    _counter(shared_daemon)

    result = shared_daemon.ctl("resume", "counter")

    assert result.returncode == 1
    assert result.stderr.startswith("counter: ERROR (")
    assert "not allowed while running" in result.stderr


def test_unknown_module_says_so_on_stderr(shared_daemon):
    result = shared_daemon.ctl("show", "ticker")

    assert result.returncode == 1
    assert result.stderr == "ticker: ERROR (no such module)\n"
    assert result.stdout == ""


def test_stop_and_start_a_module(shared_daemon):
    _counter(shared_daemon)

    stopped = shared_daemon.ctl("stop", "counter")
    state = shared_daemon.module("counter")["state"]
    started = shared_daemon.ctl("start", "counter")

    assert stopped.stdout == "counter: stopped\n" and state == "stopped"
    assert started.stdout == "counter: started\n"
    assert shared_daemon.module("counter")["state"] == "running"


def test_daemons_own_modules_cannot_be_changed(shared_daemon):
    result = shared_daemon.ctl("stop", "moduled")

    assert result.returncode == 4
    assert "cannot be changed" in result.stderr


def test_json_list_is_an_array_of_modules(shared_daemon):
    _counter(shared_daemon)

    result = shared_daemon.ctl("--json", "list")

    modules = json.loads(result.stdout)
    assert isinstance(modules, list)
    counter = next(m for m in modules if m["name"] == "counter")
    assert counter["state"] in ("idle", "running", "paused", "stopped", "failed")
    assert counter["plugin"] == "counter"


def test_json_status_has_modules_plugins_and_counters(shared_daemon):
    _counter(shared_daemon)

    status = json.loads(shared_daemon.ctl("--json", "status").stdout)

    assert {"modules", "plugins", "daemon", "context", "lost", "probes"} <= set(status)
    plugin = next(p for p in status["plugins"] if p["name"] == "counter")
    assert {"path", "state", "error"} <= set(plugin)
    assert plugin["state"] == "loaded"
    assert status["daemon"]["uptime_s"] > 0


def test_human_status_is_an_aligned_table(shared_daemon):
    _counter(shared_daemon)

    out = shared_daemon.ctl("status").stdout.splitlines()

    header = next(line for line in out if line.startswith("MODULE"))
    row = next(line for line in out if line.startswith("counter "))
    assert header.index("STATE") == row.index("running")
    assert any(line.startswith("PLUGIN") for line in out)


def test_show_prints_the_modules_dump(shared_daemon):
    _counter(shared_daemon)

    human = shared_daemon.ctl("show", "counter")
    as_json = json.loads(shared_daemon.ctl("--json", "show", "counter").stdout)

    assert "name: counter" in human.stdout
    assert "timer" in human.stdout
    assert as_json["sources"][0]["type"] == "timer"


def test_reload_one_plugin_by_name(shared_daemon):
    _counter(shared_daemon)
    loads = shared_daemon.plugin("counter")["loads"]

    result = shared_daemon.ctl("reload", "counter")

    assert (result.returncode, result.stdout) == (0, "counter: reloaded\n")
    assert shared_daemon.plugin("counter")["loads"] == loads + 1


def test_reload_of_a_broken_plugin_fails_with_its_error(shared_daemon):
    write(shared_daemon.plugins / "cracked.py", "def f(:\n")
    wait_for(lambda: shared_daemon.plugin("cracked"))

    result = shared_daemon.ctl("reload", "cracked")

    assert result.returncode == 1
    assert "SyntaxError" in result.stderr


def test_tail_prints_published_messages_until_interrupted(shared_daemon):
    _counter(shared_daemon)
    cmd = [PY, "-m", "moduled.cli.modulectl", "--socket", shared_daemon.sock_path]
    proc = subprocess.Popen(
        [*cmd, "tail", "counter/.*"], stdout=subprocess.PIPE, text=True
    )
    first = proc.stdout.readline()

    proc.send_signal(signal.SIGINT)

    assert proc.wait(timeout=10) == 0
    assert " counter/tick counter " in first


def test_probes_without_kernel_sources_says_so(shared_daemon):
    result = shared_daemon.ctl("probes")

    assert result.returncode == 0
    assert "no probes attached" in result.stdout or "MODULE" in result.stdout


def test_cannot_connect_exits_3(tmp_path):
    result = subprocess.run(
        [PY, "-m", "moduled.cli.modulectl", "--socket", str(tmp_path / "x"), "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 3
    assert "no such socket" in result.stderr


def test_usage_error_exits_2(shared_daemon):
    assert shared_daemon.ctl("frobnicate").returncode == 2
    assert shared_daemon.ctl("pause").returncode == 2


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
def test_timeout_must_be_a_finite_positive_number(shared_daemon, value):
    result = shared_daemon.ctl(f"--timeout={value}", "status")

    assert result.returncode == 2
    assert "--timeout" in result.stderr
    assert "Traceback" not in result.stderr


def test_socket_comes_from_moduled_socket_in_the_environment(shared_daemon):
    import os

    env = dict(os.environ, MODULED_SOCKET=shared_daemon.sock_path)
    result = subprocess.run(
        [PY, "-m", "moduled.cli.modulectl", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )

    assert result.returncode == 0
    assert "moduled.tap" in result.stdout
