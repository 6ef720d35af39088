"""The stock plugins in a real daemon, seen through ``tail``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import DaemonProc, wait_for

STOCK = Path(__file__).parents[2] / "daemon" / "plugins"

pytestmark = pytest.mark.kernel


class Tail:
    """A ``tail`` connection collecting events."""

    def __init__(self, d: DaemonProc, topic: str = ".*") -> None:
        self.sock = d.connect()
        self.file = self.sock.makefile("rb")
        req = {"v": 1, "id": "t", "cmd": "tail", "args": {"topic": topic}}
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        assert json.loads(self.file.readline())["ok"] is True

    def find(self, predicate, timeout: float = 15.0) -> dict:
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = json.loads(self.file.readline())["event"]
            if predicate(event):
                return event
        raise AssertionError("no matching event")

    def close(self) -> None:
        self.file.close()  # the file holds the socket's fd open too
        self.sock.close()


@pytest.fixture(scope="module")
def stock() -> Iterator[tuple[DaemonProc, Path]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_NET_ADMIN for the proc connector)")
    base = Path(tempfile.mkdtemp(prefix="moduled-stock-"))
    os.chmod(base, 0o755)
    watched = base / "watched"
    watched.mkdir()
    config = f"""
    [plugins.file_integrity]
    paths = ["{watched}"]
    [plugins.write_exec]
    dirs = ["{watched}"]
    window = 30
    [plugins.exec_logger]
    log = false
    """
    d = DaemonProc(base, config, args=("--plugins", str(STOCK)))
    d.start()
    try:
        wait_for(
            lambda: all(m["state"] != "idle" for m in d.result("list")), what="start"
        )
        yield d, watched
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


def _need_running(d: DaemonProc, name: str) -> None:
    module = d.module(name)
    if module is None or module["state"] != "running":
        failure = module and module["failure"]
        if failure and "SourceUnavailable" in failure:
            pytest.skip(f"{name}: {failure}")
        raise AssertionError(f"{name} is not running: {module}")


def test_every_stock_plugin_loads(stock):
    d, _ = stock

    plugins = d.result("status")["plugins"]

    stock_names = {p.stem for p in STOCK.glob("*.py")}
    assert {p["name"] for p in plugins} >= stock_names
    assert all(p["state"] == "loaded" for p in plugins), plugins


def test_exec_logger_publishes_each_exec(stock):
    d, _ = stock
    _need_running(d, "exec_logger")
    tail = Tail(d, "exec")

    # It exits at once: only a kernel-side read of argv can see it whole.
    subprocess.run(["/bin/true", "exec-logger-marker"], check=True)
    subprocess.run(["/bin/sh", "-c", "exit 0", "exec-logger-sh"], check=True)

    short = tail.find(lambda e: "exec-logger-marker" in e["message"]["argv"])
    shell = tail.find(lambda e: "exec-logger-sh" in e["message"]["argv"])
    assert short["message"]["argv"] == ["/bin/true", "exec-logger-marker"]
    assert short["message"]["exe"] == "/bin/true"
    assert short["message"]["result"] == 0
    assert shell["message"]["argv"] == ["/bin/sh", "-c", "exit 0", "exec-logger-sh"]
    tail.close()


def test_exec_logger_falls_back_to_the_process_connector(tmp_path):
    base = tmp_path / "noebpf"
    base.mkdir()
    os.chmod(base, 0o755)
    d = DaemonProc(
        base,
        "[plugins.exec_logger]\nlog = false\nebpf = false\n",
        args=("--plugins", str(STOCK)),
    )
    d.start()
    try:
        _need_running(d, "exec_logger")
        tail = Tail(d, "exec")
        # It lives long enough for its /proc/<pid>/cmdline to be read.
        subprocess.run(["/bin/sh", "-c", "sleep 0.5", "exec-fallback"], check=True)

        event = tail.find(lambda e: "exec-fallback" in e["message"]["argv"])
        assert event["message"]["exe"] == os.path.realpath("/bin/sh")
        assert event["message"]["result"] is None
        assert d.module("exec_logger")["sources"] == 1
        tail.close()
    finally:
        d.stop()


def test_file_integrity_reports_hashes_of_changed_files(stock):
    d, watched = stock
    _need_running(d, "file_integrity")
    tail = Tail(d, "fim/changed")
    target = watched / "sub" / "app.conf"
    target.parent.mkdir(exist_ok=True)
    time.sleep(0.2)  # the recursive watch adds the new directory

    target.write_text("one\n")
    first = tail.find(lambda e: e["message"]["path"] == str(target))
    target.write_text("two\n")
    second = tail.find(lambda e: e["message"]["path"] == str(target))

    assert first["message"]["sha256"] == (
        "2c8b08da5ce60398e1f19af0e5dccc744df274b826abe585eaba68c525434806"
    )
    assert second["message"]["event"] == "modified"
    assert second["message"]["previous"] == first["message"]["sha256"]
    tail.close()


def test_write_then_exec_in_a_watched_directory_is_an_alert(stock):
    d, watched = stock
    _need_running(d, "write_exec")
    tail = Tail(d, "alert/.*")
    dropped = watched / "dropped"
    shutil.copy("/bin/true", dropped)
    os.chmod(dropped, 0o755)

    subprocess.run([str(dropped)], check=True)

    event = tail.find(lambda e: e["message"]["path"] == str(dropped))
    assert event["topic"] == "alert/write-exec"
    assert event["message"]["written_ago_s"] < 30
    tail.close()


def test_fatal_signal_is_reported(stock):
    d, _ = stock
    _need_running(d, "signal_reporter")
    tail = Tail(d, "crash/signal")
    proc = subprocess.Popen(["/bin/sleep", "30"])
    time.sleep(0.1)

    proc.send_signal(signal.SIGSEGV)
    proc.wait()

    event = tail.find(lambda e: e["message"]["pid"] == proc.pid)
    assert event["message"]["name"] == "SIGSEGV"
    tail.close()


def test_new_bridge_link_is_reported(stock):
    d, _ = stock
    _need_running(d, "net_links")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's ip is not installed")
    tail = Tail(d, "net/link")
    name = f"mdt{os.getpid() % 100000}"

    made = subprocess.run(["ip", "link", "add", name, "type", "bridge"])
    if made.returncode != 0:
        pytest.skip("cannot create a bridge link here")
    try:
        added = tail.find(lambda e: e["message"]["name"] == name)
    finally:
        subprocess.run(["ip", "link", "del", name])
    removed = tail.find(
        lambda e: e["message"]["name"] == name and e["message"]["event"] == "removed"
    )

    assert added["message"]["event"] == "added"
    assert removed["message"]["index"] == added["message"]["index"]
    tail.close()
