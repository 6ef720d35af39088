"""Netlink sources against the real kernel: proc connector, uevents and
rtnetlink, driven by real processes and real bridge links."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import moduled as md
from moduled.kernel.netlink import (
    ProcEvent,
    ProcEvents,
    Rtnl,
    RtnlEvent,
    Uevent,
    UeventEvent,
)

pytestmark = pytest.mark.kernel

GUARD = 99


class Probe(md.Module):
    """Runs ``start(self)`` in on_start and ``evt(self, events)`` per batch."""

    def __init__(
        self,
        start: Callable[[Probe], Any],
        evt: Callable[[Probe, list[md.Event]], Any],
    ) -> None:
        super().__init__("netlink-probe")
        self._start_cb = start
        self._evt_cb = evt
        self.seen: list[md.Event] = []
        self.kept: dict[str, Any] = {}

    def on_start(self) -> None:
        self._start_cb(self)

    def on_evt(self, events: list[md.Event]) -> None:
        self.seen.extend(events)
        self._evt_cb(self, events)

    def data(self, userdata: Any = None) -> list[Any]:
        return [ev.data for ev in self.seen if userdata in (None, ev.userdata)]


class Guard(md.Module):
    """Quits with GUARD if the test's module never does."""

    def on_start(self) -> None:
        self.register(md.Timer(10_000_000_000), flags=md.SrcFlag.ONESHOT)

    def on_evt(self, events: list[md.Event]) -> None:
        self.ctx.quit(GUARD)


def run(probe: Probe) -> int:
    """Loop ``probe`` in a fresh context; skip if the kernel refused it."""
    ctx = md.Context("nltest")
    ctx.register(probe)
    ctx.register(Guard("guard"))
    code = ctx.loop()
    if isinstance(probe.failure, md.SourceUnavailable):
        pytest.skip(str(probe.failure))
    assert probe.failure is None
    return code


def spawn(script: str | list[str], children: list[subprocess.Popen]) -> int:
    """Start ``sh -c script`` (or the argv ``script``); return its pid."""
    argv = ["sh", "-c", script] if isinstance(script, str) else script
    child = subprocess.Popen(argv)
    children.append(child)
    return child.pid


def of_pid(probe: Probe, pid: int) -> list[ProcEvent]:
    return [e for e in probe.data() if isinstance(e, ProcEvent) and e.tgid == pid]


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


# -- proc connector ----------------------------------------------------------


def watch_child(
    source: ProcEvents, script: str | list[str], children: list[subprocess.Popen]
) -> tuple[Probe, int]:
    """Register ``source``, start ``script``, loop until the child's exit
    event; return the probe and the child's pid."""

    def start(m):
        m.register(source)
        m.kept["pid"] = spawn(script, children)

    def evt(m, events):
        if any(e.kind == "exit" for e in of_pid(m, m.kept["pid"])):
            m.ctx.quit(0)

    probe = Probe(start, evt)
    assert run(probe) == 0
    return probe, probe.kept["pid"]


def test_child_shows_fork_exec_and_exit_with_its_exit_code(children):
    probe, pid = watch_child(ProcEvents(("fork", "exec", "exit")), "exit 3", children)

    mine = of_pid(probe, pid)
    assert [e.kind for e in mine] == ["fork", "exec", "exit"]
    fork, exec_, exit_ = mine
    assert (fork.pid, fork.parent_tgid) == (pid, os.getpid())
    assert exec_.pid == pid and exec_.exit_code is None
    assert exit_.exit_code == 3
    assert exit_.exit_signal == signal.SIGCHLD
    assert exit_.parent_tgid == os.getpid()


def test_process_killed_by_a_signal_exits_with_minus_the_signal(children):
    probe, pid = watch_child(ProcEvents(("exit",)), "kill -9 $$", children)

    (exit_,) = of_pid(probe, pid)
    assert exit_.exit_code == -signal.SIGKILL


def test_exec_event_reads_the_new_comm_from_proc(children):
    def start(m):
        m.register(ProcEvents(("exec", "exit")))
        m.kept["pid"] = spawn(["sleep", "30"], children)

    def evt(m, events):
        for e in of_pid(m, m.kept["pid"]):
            if e.kind == "exec" and "comm" not in m.kept:
                m.kept["comm"] = e.comm
                os.kill(e.pid, signal.SIGTERM)
            elif e.kind == "exit":
                m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    assert probe.kept["comm"] == "sleep"
    assert [e.kind for e in of_pid(probe, probe.kept["pid"])] == ["exec", "exit"]


def test_comm_event_carries_the_name_a_process_gave_itself(children):
    script = "printf mdrenamed > /proc/$$/comm; exit 0"

    probe, pid = watch_child(ProcEvents(("comm", "exit")), script, children)

    comm = [e for e in of_pid(probe, pid) if e.kind == "comm"]
    assert [e.comm for e in comm] == ["mdrenamed"]


def test_kinds_filter_delivers_only_the_wanted_kinds(children):
    probe, _ = watch_child(ProcEvents(("exit",)), "/bin/true", children)

    assert {e.kind for e in probe.data()} == {"exit"}


def test_overrun_is_counted_as_loss_and_the_source_keeps_reading(children, caplog):
    # 16 KiB holds a few dozen events: 300 unread children overflow it, yet
    # it absorbs the background noise of a busy machine once the loop reads.
    def start(m):
        m.kept["src"] = m.register(ProcEvents(("fork", "exit"), rcvbuf=16 << 10))
        m.kept["markers"] = {}
        # The loop is not reading while on_start runs: the buffer overflows.
        for _ in range(300):
            pid = os.posix_spawn("/bin/true", ["true"], os.environ)
            os.waitpid(pid, 0)

    def evt(m, events):
        markers = m.kept["markers"]
        for pid in markers:
            exits = [e for e in of_pid(m, pid) if e.kind == "exit"]
            if exits:
                m.kept["exit"] = exits[0]
                m.kept["dump"] = m.kept["src"].dump()
                m.ctx.quit(0)
                return
        # A marker whose exit was lost in a later overrun is replaced.
        if all(c.poll() is not None for c in markers.values()):
            pid = spawn("exit 7", children)
            markers[pid] = children[-1]

    probe = Probe(start, evt)

    with caplog.at_level(logging.WARNING, logger="moduled.kernel.netlink"):
        assert run(probe) == 0

    src = probe.kept["src"]
    assert any("ENOBUFS" in r.getMessage() for r in caplog.records)
    assert src.overruns >= 1
    assert src.lost >= src.overruns
    assert probe.stats().lost_events >= src.overruns
    assert probe.kept["dump"]["overruns"] >= 1
    assert probe.kept["exit"].exit_code == 7


def test_dump_reports_overruns_and_the_granted_buffer(children):
    def start(m):
        src = m.register(ProcEvents(("exit",), rcvbuf=1 << 20))
        m.kept["dump"] = src.dump()
        m.ctx.quit(0)

    probe = Probe(start, lambda m, evs: None)

    assert run(probe) == 0

    d = probe.kept["dump"]
    assert d["type"] == "proc" and d["key"] == "proc"
    assert d["overruns"] == 0 and d["kinds"] == ["exit"]
    assert d["rcvbuf"] >= 1 << 20


def test_second_proc_source_on_one_module_is_already_registered():
    def start(m):
        m.register(ProcEvents(("exit",)))
        try:
            m.register(ProcEvents(("fork",)))
        except md.AlreadyRegistered as exc:
            m.kept["error"] = exc
        m.kept["kinds"] = [s.kinds for s in m.sources(md.SrcType.PROC)]
        m.ctx.quit(0)

    probe = Probe(start, lambda m, evs: None)

    assert run(probe) == 0

    assert isinstance(probe.kept["error"], md.AlreadyRegistered)
    assert probe.kept["kinds"] == [("exit",)]


def test_deregistering_closes_the_socket_and_detach_is_idempotent():
    def start(m):
        src = m.register(ProcEvents(("exit",)))
        fd = src._sock.fileno()
        m.kept["inode"] = os.fstat(fd).st_ino
        m.deregister(src)
        src._detach()
        try:
            m.kept["after"] = os.fstat(fd).st_ino
        except OSError:
            m.kept["after"] = None
        m.ctx.quit(0)

    probe = Probe(start, lambda m, evs: None)

    assert run(probe) == 0

    assert probe.kept["after"] != probe.kept["inode"]


_REGISTER_IN_NAMESPACE = """
import moduled as md
from moduled.kernel.netlink import ProcEvents

class M(md.Module):
    def on_start(self):
        try:
            self.register(ProcEvents(("exit",)))
        except md.SourceUnavailable as exc:
            print("refused:", exc)
        print("sources:", len(self.sources(md.SrcType.PROC)))
        self.ctx.quit(0)

    def on_evt(self, events):
        pass

ctx = md.Context("ns")
ctx.register(M("m"))
raise SystemExit(ctx.loop())
"""


@pytest.mark.parametrize(
    ("unshare", "reason"),
    [
        (["--user", "--map-root-user"], "initial user and pid namespaces"),
        (["--net"], "no connector in this network namespace"),
    ],
    ids=["user-namespace", "network-namespace"],
)
def test_proc_events_outside_the_initial_namespaces_are_refused_cleanly(
    unshare, reason
):
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare to enter new namespaces")
    argv = ["unshare", *unshare, sys.executable, "-c", _REGISTER_IN_NAMESPACE]

    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)

    if "unshare failed" in done.stderr:
        pytest.skip(f"cannot create namespaces here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert "refused: proc connector: " in done.stdout
    assert reason in done.stdout
    assert "sources: 0" in done.stdout


# -- rtnetlink and uevents ----------------------------------------------------


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def bridge_name() -> Iterator[str]:
    """A unique bridge name; whatever happens, no such link is left behind."""
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_NET_ADMIN) to add bridge links")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip to add bridge links")
    name = f"mdtbr{os.getpid() % 1_000_000}"
    try:
        yield name
    finally:
        if _ip("link", "show", name).returncode == 0:
            _ip("link", "del", name)


def cycle_bridge(name: str, address: str | None = None) -> None:
    """Add bridge ``name`` (with ``address``), bring it up, delete it."""
    steps = [("link", "add", name, "type", "bridge")]
    if address is not None:
        steps.append(("addr", "add", address, "dev", name))
    steps += [("link", "set", name, "up"), ("link", "del", name)]
    for step in steps:
        done = _ip(*step)
        if done.returncode != 0:
            pytest.skip(f"ip {' '.join(step)} failed: {done.stderr.strip()}")


def _removed(m: Probe, name: str) -> bool:
    return any(
        isinstance(e, UeventEvent)
        and e.action == "remove"
        and e.env.get("INTERFACE") == name
        for e in m.data()
    )


def _link_gone(m: Probe, name: str) -> bool:
    return any(
        isinstance(e, RtnlEvent)
        and e.group == "link"
        and e.action == "del"
        and e.name == name
        for e in m.data()
    )


def test_bridge_link_shows_in_rtnl_and_uevent_from_add_to_delete():
    with bridge_name() as name:
        address = f"10.213.{os.getpid() % 250}.1"

        def start(m):
            m.register(Rtnl(("link", "addr", "route")))
            m.register(Uevent("net"))
            cycle_bridge(name, f"{address}/24")

        def evt(m, events):
            if _removed(m, name) and _link_gone(m, name):
                m.ctx.quit(0)

        probe = Probe(start, evt)

        assert run(probe) == 0

    rtnl = [e for e in probe.data() if isinstance(e, RtnlEvent)]
    links = [e for e in rtnl if e.group == "link" and e.name == name]
    assert links[0].action == "new" and links[-1].action == "del"
    index = links[0].index
    assert index > 0 and all(e.index == index for e in links)
    assert links[0].attrs["IFLA_IFNAME"] == name
    assert links[0].attrs["IFLA_LINKINFO"]["IFLA_INFO_KIND"] == "bridge"
    addrs = [e for e in rtnl if e.group == "addr" and e.index == index]
    assert any(
        e.action == "new" and e.name == name and e.attrs["IFA_LOCAL"] == address
        for e in addrs
    )
    routes = [e for e in rtnl if e.group == "route" and e.index == index]
    assert any(e.attrs.get("RTA_DST") == address and e.name == name for e in routes)
    uevents = [e for e in probe.data() if isinstance(e, UeventEvent)]
    mine = [e for e in uevents if e.env.get("INTERFACE") == name]
    assert [e.action for e in mine] == ["add", "remove"]
    assert all(e.subsystem == "net" for e in uevents)
    assert mine[0].devpath.endswith(f"/net/{name}")
    assert mine[0].env["IFINDEX"] == str(index)


def test_uevent_subsystem_filter_keeps_each_source_to_its_subsystem():
    with bridge_name() as name:

        def start(m):
            m.register(Uevent("net"), userdata="net")
            m.register(Uevent("queues"), userdata="queues")
            m.register(Uevent(), userdata="all")
            cycle_bridge(name)

        def evt(m, events):
            if _removed(m, name):
                m.ctx.quit(0)

        probe = Probe(start, evt)

        assert run(probe) == 0

    assert {e.subsystem for e in probe.data("net")} == {"net"}
    assert {e.subsystem for e in probe.data("queues")} == {"queues"}
    assert {"net", "queues"} <= {e.subsystem for e in probe.data("all")}


def test_uevent_forged_by_a_user_space_sender_is_ignored():
    with bridge_name() as name:
        forged = (
            b"add@/devices/virtual/net/mdforged\0ACTION=add\0"
            b"DEVPATH=/devices/virtual/net/mdforged\0SUBSYSTEM=net\0"
            b"INTERFACE=mdforged\0SEQNUM=1\0"
        )

        def start(m):
            m.kept["src"] = m.register(Uevent("net"))
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15) as s:
                s.sendto(forged, (0, 1))
            cycle_bridge(name)

        def evt(m, events):
            if _removed(m, name):
                m.ctx.quit(0)

        probe = Probe(start, evt)

        assert run(probe) == 0

    assert all(e.env.get("INTERFACE") != "mdforged" for e in probe.data())
    assert probe.kept["src"].dump()["foreign"] >= 1
