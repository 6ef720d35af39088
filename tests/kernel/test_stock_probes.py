"""Stock probes for real: exec, exit, open, TCP connect, OOM kill, signals.

One module registers every stock probe in one round (one bcc compile),
pauses itself, makes each event happen, lets the loop run while paused,
then resumes; each test checks its part.  The same run checks that pause
keeps probes attached and queues their events, and that nothing (perf
event or BPF fds, tracefs probe entries) is left after the loop exits.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
from tests.conftest import need_root
from tests.kernel.leftovers import kernel_fds, probe_entries

import moduled as md
from moduled.errors import InvalidArgument, NotFound
from moduled.kernel import doctor
from moduled.kernel.probe import STOCK, stock

pytestmark = pytest.mark.kernel


def need_bpf() -> None:
    need_root()
    for c in doctor.check():
        if c.name in ("tracefs", "bcc", "headers", "ringbuf") and not c.ok:
            pytest.skip(f"needs {c.name}: {c.detail}")


def memory_cgroup() -> tuple[str, str] | None:
    """A place for a memory-limited child cgroup: ("v2"|"v1", parent dir)."""
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            with open(os.path.join(root, "cgroup.controllers"), encoding="ascii") as f:
                if "memory" in f.read().split():
                    return "v2", root
        except OSError:
            continue
    with open("/proc/self/cgroup", encoding="ascii") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                base = "/sys/fs/cgroup/memory" + path
                if os.path.exists(os.path.join(base, "memory.limit_in_bytes")):
                    return "v1", base
    return None


def run_oom_victim() -> int:
    """Run a process that exceeds a 48 MiB memory limit; return its pid."""
    where = memory_cgroup()
    if where is None:
        pytest.skip("needs a memory cgroup (cgroup2 with +memory or cgroup v1)")
    kind, parent = where
    cg = os.path.join(parent, f"md-oom-{uuid.uuid4().hex[:8]}")
    if kind == "v2":
        with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
            f.write("+memory")
    os.mkdir(cg)
    try:
        limits = (
            {"memory.max": "48M", "memory.swap.max": "0"}
            if kind == "v2"
            else {"memory.limit_in_bytes": str(48 << 20)}
        )
        for name, value in limits.items():
            if os.path.exists(os.path.join(cg, name)):
                with open(os.path.join(cg, name), "w") as f:
                    f.write(value)
        hog = "x = b'x' * (400 << 20)"
        child = subprocess.Popen(
            [
                "sh",
                "-c",
                f'echo $$ > {cg}/cgroup.procs && exec {sys.executable} -c "{hog}"',
            ],
            stderr=subprocess.DEVNULL,
        )
        assert child.wait(timeout=30) == -signal.SIGKILL
        return child.pid
    finally:
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.02)


def openat2(path: str, flags: int, mode: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    how = (ctypes.c_uint64 * 3)(flags, mode, 0)
    fd = libc.syscall(437, -100, path.encode(), ctypes.byref(how), 24)
    if fd >= 0:
        os.close(fd)
    return fd


class StockRun(md.Module):
    """Registers every stock probe, pauses, acts, waits, resumes, quits."""

    def __init__(self, action):
        super().__init__(name=f"stock-{uuid.uuid4().hex[:6]}")
        self.action = action
        self.srcs = {name: stock(name) for name in STOCK}
        self.got = []
        self.paused_delivered = None

    def on_start(self):
        for name, src in self.srcs.items():
            self.register(src, userdata=name)
        self._ctx._call_soon(self._act)

    def _act(self):
        self.states = {name: s.state for name, s in self.srcs.items()}
        self.programs = {id(s._program) for s in self.srcs.values()}
        self.pause()
        self.during = self.action()
        # Let the loop read the rings for a while: the module is paused.
        self._ctx._call_at(time.monotonic_ns() + 300_000_000, self._check_paused)

    def _check_paused(self):
        self.paused_delivered = len(self.got)
        self.paused_states = {name: s.state for name, s in self.srcs.items()}
        self.paused_emitted = {name: s.events for name, s in self.srcs.items()}
        for src in self.srcs.values():
            src._flush()
        self.resume()
        self._ctx._call_at(time.monotonic_ns() + 50_000_000, self._end)

    def _end(self):
        self._ctx.quit(0)

    def on_evt(self, events):
        self.got.extend((ev.userdata, ev.data) for ev in events)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    need_bpf()
    tmp = tmp_path_factory.mktemp("stock")
    binary = tmp / f"mdecho_{uuid.uuid4().hex[:6]}"
    shutil.copy("/bin/echo", binary)
    fds_before, entries_before = kernel_fds(), probe_entries()

    def action():
        out = {"me": os.getpid()}
        subprocess.run(
            [str(binary), "one", "two words"], check=True, stdout=subprocess.DEVNULL
        )
        many = [str(binary), *(f"a{i}" for i in range(25))]
        subprocess.run(many, check=True, stdout=subprocess.DEVNULL)
        out["missing_exec"] = f"/nonexistent/md_{uuid.uuid4().hex[:6]}"
        with pytest.raises(FileNotFoundError):
            subprocess.run([out["missing_exec"]])

        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(7)"])
        child.wait()
        out["exit7"] = child.pid
        sleeper = subprocess.Popen(["sleep", "30"])
        time.sleep(0.1)
        sleeper.send_signal(signal.SIGTERM)
        assert sleeper.wait() == -signal.SIGTERM
        out["termed"] = sleeper.pid

        out["opened"] = str(tmp / f"md_open_{uuid.uuid4().hex[:6]}")
        os.close(os.open(out["opened"], os.O_WRONLY | os.O_CREAT, 0o640))
        out["missing"] = str(tmp / "no" / "such")
        with pytest.raises(FileNotFoundError):
            os.open(out["missing"], os.O_RDONLY)
        out["opened2"] = str(tmp / f"md_open2_{uuid.uuid4().hex[:6]}")
        out["openat2_fd"] = openat2(out["opened2"], os.O_RDWR | os.O_CREAT, 0o600)

        with socket.socket() as server, socket.socket() as client:
            server.bind(("127.0.0.1", 0))
            server.listen()
            client.connect(server.getsockname())
            out["dport"] = server.getsockname()[1]
            out["sport"] = client.getsockname()[1]
            server.accept()[0].close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            out["closed_port"] = probe.getsockname()[1]
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", out["closed_port"]))
        with open("/proc/self/comm", encoding="utf-8") as f:
            out["comm"] = f.read().strip()

        handler = (
            "import signal, sys, time\n"
            "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(3))\n"
            "print(1, flush=True)\n"
            "time.sleep(30)\n"
        )
        handled = subprocess.Popen(
            [sys.executable, "-c", handler], stdout=subprocess.PIPE
        )
        handled.stdout.readline()
        handled.send_signal(signal.SIGUSR1)
        assert handled.wait() == 3
        handled.stdout.close()
        out["handled"] = handled.pid

        out["oom"] = run_oom_victim()
        return out

    mod = StockRun(action)
    ctx = md.Context("kt-stock")
    ctx.register(mod)
    assert ctx.loop() == 0
    by = {name: [e for tag, e in mod.got if tag == name] for name in STOCK}
    return {
        "mod": mod,
        "by": by,
        "do": mod.during,
        "binary": str(binary),
        "fds": (fds_before, kernel_fds()),
        "entries": (entries_before, probe_entries()),
    }


def test_every_stock_probe_attaches_in_one_round(run):
    assert run["mod"].states == {name: "attached" for name in STOCK}
    assert set(STOCK) >= {"exec", "exit", "open", "tcp_connect", "oom_kill", "signal"}
    assert len(run["mod"].programs) == 1


def test_exec_reports_filename_and_argv(run):
    hits = [
        e.fields for e in run["by"]["exec"] if e.fields["filename"] == run["binary"]
    ]

    short = [f for f in hits if f["argc"] == 3]
    assert len(short) == 1
    assert short[0]["argv"] == [run["binary"], "one", "two words"]
    assert short[0]["result"] == 0 and not short[0]["truncated"]
    assert short[0]["comm"] == os.path.basename(run["binary"])[:15]
    assert short[0]["tgid"] > 0


def test_exec_with_many_arguments_keeps_the_first_twenty(run):
    hits = [
        e.fields for e in run["by"]["exec"] if e.fields["filename"] == run["binary"]
    ]

    long = [f for f in hits if f["truncated"]]
    assert len(long) == 1
    assert long[0]["argc"] == 20
    assert long[0]["argv"] == [run["binary"], *(f"a{i}" for i in range(19))]


def test_a_failed_exec_reports_its_errno(run):
    missing = run["do"]["missing_exec"]

    hits = [e.fields for e in run["by"]["exec"] if e.fields["filename"] == missing]

    assert [(f["result"], f["argv"]) for f in hits] == [(-2, [missing])]


def test_exit_reports_the_exit_code(run):
    hits = [
        e.fields for e in run["by"]["exit"] if e.fields["tgid"] == run["do"]["exit7"]
    ]

    assert [(f["how"], f["exit_code"], f["signal"]) for f in hits] == [("exit", 7, 0)]


def test_exit_reports_the_fatal_signal(run):
    hits = [
        e.fields for e in run["by"]["exit"] if e.fields["tgid"] == run["do"]["termed"]
    ]

    assert [(f["how"], f["signal"]) for f in hits] == [("signal", signal.SIGTERM)]


def test_open_reports_path_flags_mode_and_result(run):
    hits = [
        e.fields
        for e in run["by"]["open"]
        if e.fields["filename"] == run["do"]["opened"]
    ]

    assert len(hits) == 1
    f = hits[0]
    assert f["call"] == "openat" and f["result"] >= 0
    assert f["flags"] & (os.O_WRONLY | os.O_CREAT) == os.O_WRONLY | os.O_CREAT
    assert f["mode"] == 0o640 and f["dfd"] == -100
    assert f["tgid"] == run["do"]["me"]


def test_a_failed_open_reports_its_errno(run):
    hits = [
        e.fields
        for e in run["by"]["open"]
        if e.fields["filename"] == run["do"]["missing"]
    ]

    assert [f["result"] for f in hits] == [-2]


def test_openat2_is_reported_with_the_flags_from_open_how(run):
    hits = [
        e.fields
        for e in run["by"]["open"]
        if e.fields["filename"] == run["do"]["opened2"]
    ]

    assert run["do"]["openat2_fd"] >= 0
    assert [(f["call"], f["mode"]) for f in hits] == [("openat2", 0o600)]
    assert hits[0]["flags"] & os.O_CREAT and hits[0]["result"] >= 0


def test_tcp_connect_reports_addresses_and_ports(run):
    do = run["do"]

    hits = [
        e.fields
        for e in run["by"]["tcp_connect"]
        if e.fields["tgid"] == do["me"] and e.fields["dport"] == do["dport"]
    ]

    assert len(hits) == 1
    f = hits[0]
    assert (f["saddr"], f["daddr"]) == ("127.0.0.1", "127.0.0.1")
    assert f["sport"] == do["sport"] and f["family"] == socket.AF_INET
    assert f["established"] == 1 and f["comm"] == do["comm"]


def test_a_refused_tcp_connect_is_reported_as_not_established(run):
    do = run["do"]

    hits = [
        e.fields
        for e in run["by"]["tcp_connect"]
        if e.fields["tgid"] == do["me"] and e.fields["dport"] == do["closed_port"]
    ]

    assert [(f["established"], f["daddr"]) for f in hits] == [(0, "127.0.0.1")]


def test_oom_kill_names_the_victim(run):
    victim = run["do"]["oom"]

    hits = [e.fields for e in run["by"]["oom_kill"] if e.fields["tp_pid"] == victim]

    assert len(hits) == 1
    assert hits[0]["anon_rss"] > 0
    exits = [e.fields for e in run["by"]["exit"] if e.fields["tgid"] == victim]
    assert [(f["how"], f["signal"]) for f in exits] == [("signal", signal.SIGKILL)]


def test_signal_generation_and_delivery_are_reported(run):
    termed, me = run["do"]["termed"], run["do"]["me"]

    sent = [
        e.fields
        for e in run["by"]["signal"]
        if e.fields["tp_pid"] == termed and e.fields["sig"] == signal.SIGTERM
    ]
    handled = run["do"]["handled"]
    taken = [
        e.fields for e in run["by"]["signal_deliver"] if e.fields["tgid"] == handled
    ]

    assert [f["tgid"] for f in sent] == [me]
    assert [f["sig"] for f in taken] == [signal.SIGUSR1]
    assert taken[0]["sa_handler"] > 1


def test_a_fatal_signal_reaches_its_target_as_sigkill(run):
    # The kernel turns a fatal signal with the default action into SIGKILL
    # when it is sent; the exit probe reports the original (see exit.bpf.c).
    termed = run["do"]["termed"]

    taken = [
        e.fields for e in run["by"]["signal_deliver"] if e.fields["tgid"] == termed
    ]

    assert [f["sig"] for f in taken] == [signal.SIGKILL]


def test_a_handled_signal_does_not_count_as_the_cause_of_exit(run):
    handled = run["do"]["handled"]

    hits = [e.fields for e in run["by"]["exit"] if e.fields["tgid"] == handled]

    assert [(f["how"], f["exit_code"], f["signal"]) for f in hits] == [("exit", 3, 0)]


def test_a_paused_module_keeps_probes_attached_and_queues_their_events(run):
    mod = run["mod"]

    assert mod.paused_delivered == 0
    assert set(mod.paused_states.values()) == {"attached"}
    assert mod.paused_emitted["exec"] > 0 and mod.paused_emitted["open"] > 0
    assert len(mod.got) >= sum(mod.paused_emitted.values())


def test_nothing_is_left_after_the_loop_exits(run):
    before, after = run["fds"]
    entries_before, entries_after = run["entries"]

    assert after == before
    assert entries_after == entries_before
    assert run["mod"].states  # the probes did open fds in between


def test_stock_rejects_unknown_names_and_arguments():
    with pytest.raises(NotFound, match="choose one of"):
        stock("nope")
    with pytest.raises(InvalidArgument, match="ring_pages"):
        stock("exec", pages=3)
    with pytest.raises(InvalidArgument, match="power of two"):
        stock("exec", ring_pages=3)


def test_stock_and_its_names_are_reachable_from_moduled_kernel():
    code = (
        "import sys\n"
        "import moduled.kernel as k\n"
        "from moduled.kernel.probe import ProbeSource\n"
        "src = k.stock('exec')\n"
        "assert isinstance(src, ProbeSource), src\n"
        "assert src.name == 'stock:exec', src.name\n"
        "assert 'exec' in k.STOCK and 'open' in k.STOCK, k.STOCK\n"
        "assert 'bcc' not in sys.modules\n"
    )

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
