"""Signals, trust, the default main and the systemd unit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import PY, require_ebpf, wait_for, write

NAMED = """
import moduled as md

class Named(md.Module):
    def __init__(self, config):
        super().__init__(name=config.get("name", "hup_default"))

    def on_evt(self, events):
        pass
"""


def test_sighup_rereads_the_config_and_reloads_every_plugin(make_daemon):
    d = make_daemon('[plugins.named]\nname = "hup_before"\n')
    write(d.plugins / "named.py", NAMED)
    d.start()
    wait_for(lambda: d.module("hup_before"))
    d.config.write_text('[plugins.named]\nname = "hup_after"\n')

    d.signal(signal.SIGHUP)

    d.wait_datagram("RELOADING=1")
    d.wait_datagram("READY=1")
    assert d.module("hup_after")["state"] == "running"
    assert d.module("hup_before") is None
    assert d.proc.poll() is None


def test_sighup_with_a_broken_config_keeps_the_previous_one(make_daemon):
    d = make_daemon('[plugins.named]\nname = "kept"\n')
    write(d.plugins / "named.py", NAMED)
    d.start()
    d.config.write_text("[daemon\nthis is not toml")

    d.signal(signal.SIGHUP)

    d.wait_datagram("READY=1")
    assert d.module("kept")["state"] == "running"
    assert "keeping the previous config" in d.log_text()


STORM = """
import moduled as md

class Storm(md.Module):
    name = "storm"

    def on_start(self):
        for i in range(64):
            self.tell(self, i)

    def on_evt(self, events):
        for ev in events:
            self.tell(self, ev.data.message)
            self.publish("storm", ev.data.message)
"""

PROBES = """
import moduled as md

class Probes(md.Module):
    name = "probes"

    def on_start(self):
        self.register(md.Tracepoint("raw_syscalls", "sys_enter", fields=["id"]))
        self.register(md.Uprobe("c", "getpid"))

    def on_evt(self, events):
        pass
"""


def _bcc_entries(pid: int) -> list[str]:
    found = []
    for name in ("uprobe_events", "kprobe_events"):
        path = Path("/sys/kernel/tracing") / name
        if path.exists():
            found += [
                line for line in path.read_text().splitlines() if f"_{pid}" in line
            ]
    return found


def test_sigterm_during_an_event_storm_exits_zero_with_probes_detached(make_daemon):
    d = make_daemon()
    write(d.plugins / "storm.py", STORM)
    write(d.plugins / "probes.py", PROBES)
    d.start()
    wait_for(lambda: (m := d.module("storm")) and m["recv"] > 10_000, what="storm")
    probes = d.module("probes")
    kernel = probes is not None and probes["state"] == "running"
    if kernel:
        wait_for(lambda: d.result("probes") and d.result("probes")[0]["events"] > 0)
    pid = d.proc.pid

    d.signal(signal.SIGTERM)

    assert d.proc.wait(timeout=10) == 0
    assert "STOPPING=1" in d.wait_datagram("STOPPING=1")
    assert _bcc_entries(pid) == []
    assert not os.path.exists(d.sock_path)


@pytest.mark.kernel
def test_probe_plugin_attaches_and_sigterm_detaches_it(make_daemon):
    require_ebpf()
    d = make_daemon()
    write(d.plugins / "probes.py", PROBES)
    d.start()
    module = wait_for(lambda: (m := d.module("probes")) and m["state"] != "idle" and m)
    assert module["state"] == "running", module["failure"]
    # The uprobe fires on every getpid() call in any process.
    subprocess.run([PY, "-c", "import os\nfor _ in range(1000): os.getpid()"])
    probes = wait_for(
        lambda: (
            all(p["events"] > 0 for p in (d.result("probes") or [{}]))
            and d.result("probes")
        )
    )
    pid = d.proc.pid

    d.signal(signal.SIGTERM)

    assert d.proc.wait(timeout=10) == 0
    assert len(probes) == 2
    assert _bcc_entries(pid) == []


@pytest.mark.root
def test_group_writable_plugin_is_refused_as_root(make_daemon):
    if os.geteuid() != 0:
        pytest.skip("the trust check applies to a daemon running as root")
    d = make_daemon()
    write(d.plugins / "ok.py", NAMED)
    write(d.plugins / "loose.py", NAMED.replace("hup_default", "loose"), mode=0o664)
    d.start()

    plugin = wait_for(lambda: d.plugin("loose"))

    assert plugin["state"] == "failed"
    assert "writable by group" in plugin["error"]
    assert "chmod g-w" in plugin["error"]
    assert d.module("loose") is None
    assert d.module("hup_default")["state"] == "running"


@pytest.mark.root
def test_plugin_not_owned_by_root_is_refused_as_root(make_daemon):
    if os.geteuid() != 0:
        pytest.skip("the trust check applies to a daemon running as root")
    d = make_daemon()
    path = write(d.plugins / "foreign.py", NAMED)
    os.chown(path, 65534, -1)
    d.start()

    plugin = wait_for(lambda: d.plugin("foreign"))

    assert plugin["state"] == "failed"
    assert "owned by uid 65534, not root" in plugin["error"]


@pytest.mark.root
def test_plugin_under_a_foreign_ancestor_directory_is_refused_naming_it(make_daemon):
    if os.geteuid() != 0:
        pytest.skip("the trust check applies to a daemon running as root")
    d = make_daemon(sub="owned_by_nobody")
    write(d.plugins / "inside.py", NAMED)
    os.chown(d.base, 65534, 65534)
    d.start()

    plugin = wait_for(lambda: d.plugin("inside"))

    assert plugin["state"] == "failed"
    assert f"directory {d.base} is owned by uid 65534" in plugin["error"]
    assert d.module("hup_default") is None


RUN_QUIT = """
import moduled as md

class Quitter(md.Module):
    name = "quitter"

    def on_start(self):
        self.register(md.Timer(10_000_000), flags=md.SrcFlag.ONESHOT)

    def on_evt(self, events):
        self.ctx.quit(7)
"""

RUN_DONE = """
import moduled as md

class Once(md.Module):
    name = "once"

    def on_start(self):
        self.register(md.Timer(10_000_000), flags=md.SrcFlag.ONESHOT)

    def on_evt(self, events):
        self.stop()
"""

RUN_FOREVER = """
import moduled as md

class Forever(md.Module):
    name = "forever"

    def on_start(self):
        self.register(md.Timer(1_000_000_000))

    def on_evt(self, events):
        pass

    def on_stop(self):
        print("forever: on_stop", flush=True)
"""


def _run(tmp_path: Path, *sources: str, **kw) -> subprocess.CompletedProcess[str]:
    files = []
    for i, src in enumerate(sources):
        files.append(str(write(tmp_path / f"f{i}.py", src)))
    cmd = [PY, "-m", "moduled.daemon.main", "run", *files]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw)


def test_default_main_exits_with_the_quit_code(tmp_path):
    assert _run(tmp_path, RUN_QUIT, RUN_FOREVER).returncode == 7


def test_default_main_exits_zero_when_every_module_stopped(tmp_path):
    assert _run(tmp_path, RUN_DONE).returncode == 0


def test_default_main_fails_on_a_broken_file(tmp_path):
    result = _run(tmp_path, "def x(:\n")

    assert result.returncode == 1
    assert "SyntaxError" in result.stderr


def test_default_main_stops_modules_on_sigterm(tmp_path):
    path = write(tmp_path / "forever.py", RUN_FOREVER)
    proc = subprocess.Popen(
        [PY, "-m", "moduled.daemon.main", "run", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: _has_timerfd(proc.pid), what="module started")

    proc.send_signal(signal.SIGTERM)

    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "forever: on_stop" in out


def _has_timerfd(pid: int) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if "timerfd" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                return True
        except OSError:
            continue
    return False


RECORDER = """
import moduled as md

class Rec(md.Module):
    name = "rec"

    def __init__(self, config):
        super().__init__()
        self.out = config["out"]
        self.send = config["send"]

    def on_start(self):
        if self.send:
            for word in ("alpha", "beta", "gamma"):
                self.tell(self, word)

    def on_evt(self, events):
        with open(self.out, "a") as f:
            for ev in events:
                f.write(f"{ev.data.message} {ev.data.sender} {ev.replayed}\\n")
"""


def test_store_records_and_replay_from_delivers_to_the_same_modules(
    make_daemon, tmp_path
):
    db = tmp_path / "events.db"
    first_out, second_out = tmp_path / "first.txt", tmp_path / "second.txt"
    first = make_daemon(
        f'[plugins.rec]\nout = "{first_out}"\nsend = true\n',
        args=("--store", str(db)),
        sub="first",
    )
    write(first.plugins / "rec.py", RECORDER)
    first.start()
    wait_for(lambda: first_out.exists() and len(first_out.read_text().split("\n")) > 3)
    assert first.result("status")["daemon"]["store"]["path"] == str(db)
    assert first.stop() == 0

    second = make_daemon(
        f'[plugins.rec]\nout = "{second_out}"\nsend = false\n',
        args=("--replay-from", str(db)),
        sub="second",
    )
    write(second.plugins / "rec.py", RECORDER)
    second.start()
    wait_for(
        lambda: second_out.exists() and len(second_out.read_text().split("\n")) > 3
    )
    status = second.result("status")

    lines = second_out.read_text().splitlines()
    assert lines == ["alpha rec True", "beta rec True", "gamma rec True"]
    assert status["daemon"]["replay"] == {"replayed": 3, "skipped": 0}


def test_replay_from_a_missing_file_is_a_usage_error(tmp_path):
    cmd = [PY, "-m", "moduled.daemon.main", "--replay-from", str(tmp_path / "db")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_missing_config_named_on_the_command_line_is_a_usage_error(tmp_path):
    cmd = [PY, "-m", "moduled.daemon.main", "--config", str(tmp_path / "no.toml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_watchdog_pings_at_half_the_managers_interval(make_daemon):
    d = make_daemon()

    d.start(WATCHDOG_USEC="200000")

    assert d.wait_datagram("WATCHDOG=1") == "WATCHDOG=1"
    assert d.wait_datagram("WATCHDOG=1") == "WATCHDOG=1"


def test_logs_carry_syslog_priorities_under_the_journal(make_daemon):
    d = make_daemon()
    write(d.plugins / "broken.py", "def f(:\n")

    d.start(journal=True)
    d.stop()

    lines = d.log_text().splitlines()
    assert any(
        line.startswith("<3>moduled.daemon.plugins: plugin broken") for line in lines
    )
    assert any(line.startswith("<6>") for line in lines)
    assert all(re.match(r"<[0-7]>", line) for line in lines if line)


def test_disabled_plugin_is_not_loaded(make_daemon):
    d = make_daemon("[plugins.named]\nenabled = false\n")
    write(d.plugins / "named.py", NAMED)

    d.start()

    assert d.plugin("named")["state"] == "disabled"
    assert d.module("hup_default") is None
