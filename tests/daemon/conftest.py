"""Helpers for the daemon tests: a real ``moduled`` process and its socket.

Each daemon is a subprocess with its own temporary directory (plugins,
config, control socket, notify socket).  Start-up waits for the READY=1
datagram on a real ``NOTIFY_SOCKET``, as systemd would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write ``text`` (dedented) to ``path`` in place (IN_CLOSE_WRITE)."""
    path.write_text(textwrap.dedent(text))
    os.chmod(path, mode)
    return path


def write_by_rename(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary name, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(textwrap.dedent(text))
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    return path


def require_ebpf() -> None:
    """Skip, naming what is missing, unless eBPF probes can be attached."""
    from moduled.kernel import doctor

    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_BPF / CAP_PERFMON)")
    failing = [c for c in doctor.check() if not c.ok and c.name in ("bcc", "tracefs")]
    if failing:
        pytest.skip(f"eBPF unavailable: {failing[0].detail}")


def wait_for(
    predicate: Callable[[], Any], timeout: float = 15.0, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}: last {last!r}")


class DaemonProc:
    """A ``moduled`` subprocess serving a control socket in ``base``."""

    def __init__(self, base: Path, config: str = "", args: tuple[str, ...] = ()):
        self.base = base
        self.plugins = base / "plugins"
        self.plugins.mkdir(exist_ok=True)
        self.sock_path = str(base / "control.sock")
        self.config = base / "moduled.toml"
        self.config.write_text(textwrap.dedent(config))
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_path = str(base / "notify.sock")
        self.notify.bind(self.notify_path)
        self.notify.settimeout(30)
        self.datagrams: list[str] = []
        self.log = base / "daemon.log"

    def start(self, journal: bool = False, **extra_env: str) -> DaemonProc:
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, PYTHONFAULTHANDLER="1")
        env.pop("MODULED_SOCKET", None)
        cmd = [
            PY,
            "-m",
            "moduled.daemon.main",
            "--config",
            str(self.config),
            "--plugins",
            str(self.plugins),
            "--socket",
            self.sock_path,
            "--log-level",
            "debug",
            *self.args,
        ]
        env.update(extra_env)
        with open(self.log, "wb") as log:
            if journal:
                # As systemd does: JOURNAL_STREAM names stderr's device:inode.
                st = os.fstat(log.fileno())
                env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        self.wait_datagram("READY=1")
        return self

    def wait_datagram(self, needle: str) -> str:
        while True:
            try:
                data = self.notify.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(
                    f"no {needle} datagram; log:\n{self.log.read_text()}"
                ) from None
            self.datagrams.append(data)
            if needle in data.split("\n"):
                return data

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.sock_path)
        return s

    def request(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        with contextlib.closing(self.connect()) as s:
            line = {"v": 1, "id": 1, "cmd": cmd, "args": args or {}}
            s.sendall(json.dumps(line).encode() + b"\n")
            return json.loads(s.makefile("rb").readline())

    def result(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        reply = self.request(cmd, args)
        assert reply["ok"], reply
        return reply["result"]

    def module(self, name: str) -> dict[str, Any] | None:
        for m in self.result("list"):
            if m["name"] == name:
                return m
        return None

    def plugin(self, name: str) -> dict[str, Any] | None:
        for p in self.result("status")["plugins"]:
            if p["name"] == name:
                return p
        return None

    def ctl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        cmd = [PY, "-m", "moduled.cli.modulectl", "--socket", self.sock_path, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw)

    def signal(self, signo: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signo)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.notify.close()
        return code

    def log_text(self) -> str:
        return self.log.read_text()


@pytest.fixture
def tmpbase() -> Iterator[Path]:
    """A root-owned 0755 directory (trusted, and reachable by other users)."""
    base = Path(tempfile.mkdtemp(prefix="moduled-test-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_daemon(tmpbase: Path) -> Iterator[Callable[..., DaemonProc]]:
    """Build daemons in a temporary directory; all are stopped afterwards."""
    made: list[DaemonProc] = []

    def make(config: str = "", args: tuple[str, ...] = (), sub: str = "") -> DaemonProc:
        base = tmpbase / sub if sub else tmpbase
        base.mkdir(exist_ok=True)
        d = DaemonProc(base, config, args)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


SHARED_CONFIG = """
[daemon]
restart_delay = 0.2
restart_max_delay = 0.4
request_timeout = 1.0

[plugins.raise_on_eval]
restart = "never"
[plugins.raise_on_start]
restart = "never"
[plugins.raise_on_evt]
restart = "never"
[plugins.raise_on_stop]
restart = "never"
[plugins.configured]
greeting = "hello"
"""


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[DaemonProc]:
    """One daemon for the tests of a file that can share it (distinct plugins)."""
    base = Path(tempfile.mkdtemp(prefix="moduled-shared-"))
    os.chmod(base, 0o755)
    d = DaemonProc(base, SHARED_CONFIG)
    d.start()
    try:
        yield d
    finally:
        d.stop()
        if not os.environ.get("MODULED_KEEP_TMP"):
            shutil.rmtree(base, ignore_errors=True)
