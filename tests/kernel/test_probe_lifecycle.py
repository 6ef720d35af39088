"""Probes that share a hook, fail to compile, or leave with their module.

Each test builds one small program (a bcc compile each) and checks that
every fd a probe opened is closed when that probe goes, and no other.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
import uuid

import pytest
from tests.kernel.leftovers import kernel_fds, probe_entries
from tests.kernel.test_bpf_probes import GETPPID_PROBE, need_bpf, run

import moduled as md
from moduled.errors import InvalidArgument, NotFound
from moduled.kernel.probe import Bpf, Tracepoint, Uprobe

pytestmark = pytest.mark.kernel

PERF = "anon_inode:[perf_event]"


def libc_path() -> str:
    from bcc import BPF

    return BPF.find_library(b"c").decode()


def test_two_uprobes_on_one_function_keep_their_own_fds():
    need_bpf()
    libc = ctypes.CDLL(libc_path())
    # "c" and libc's path, entry and return: one bcc event name for all.
    ret = Uprobe("c", "atoi", args=(("s", "char*"),), ret=True, pid=os.getpid())
    entry = Uprobe(libc_path(), "atoi", args=(("s", "char*"),), pid=os.getpid())
    fds_before, entries_before = kernel_fds(), probe_entries()

    def action(mod):
        assert (ret.state, entry.state) == ("attached", "attached")
        libc.atoi(b"11")
        ret._flush()
        entry._flush()
        attached = kernel_fds()[PERF]
        mod.deregister(ret)
        left = kernel_fds()[PERF]
        libc.atoi(b"22")
        return attached, left

    mod = run([ret, entry], action)

    attached, left = mod.during
    assert attached - fds_before[PERF] == 3  # entry+return of ret, entry
    assert left - fds_before[PERF] == 1
    got = [(e.probe, e.fields["s"], e.fields.get("retval")) for e in mod.got]
    assert (ret.name, "11", 11) in got
    assert [g for g in got if g[0] == entry.name] == [
        (entry.name, "11", None),
        (entry.name, "22", None),
    ]
    assert kernel_fds() == fds_before
    assert probe_entries() == entries_before


def test_a_bpf_that_does_not_compile_fails_alone_with_clangs_diagnostics(caplog):
    need_bpf()
    me = os.getpid()
    good = Tracepoint("syscalls", "sys_enter_getppid", filter=f"tgid == {me}")
    bad = Bpf("int broken( {", layout=(("x", "u32"),), name="broken")
    fds_before = kernel_fds()

    def action(mod):
        os.getppid()
        return good.state, bad.state

    with caplog.at_level(logging.ERROR, logger="moduled.kernel"):
        mod = run([good, bad], action)

    assert mod.during == ("attached", "failed")
    assert [e.probe for e in mod.got] == [good.name]
    error = bad.dump()["error"]
    assert error.startswith("compile failed:")
    assert "error:" in error and "broken" in error
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(mod.name in m and "bpf:broken" in m and "error:" in m for m in logged)
    assert kernel_fds() == fds_before


def test_deregistering_a_bpf_closes_what_bcc_attached_for_it():
    need_bpf()
    me = os.getpid()
    custom = Bpf(GETPPID_PROBE, layout=(("nr", "s32"),), header=True, name="tp")
    other = Tracepoint("syscalls", "sys_enter_getppid", filter=f"tgid == {me}")
    fds_before = kernel_fds()

    def action(mod):
        os.getppid()
        custom._flush()
        attached = kernel_fds()[PERF]
        mod.deregister(custom)
        left = kernel_fds()[PERF]
        os.getppid()
        return attached, left

    mod = run([custom, other], action)

    attached, left = mod.during
    assert attached - fds_before[PERF] == 2
    assert left - fds_before[PERF] == 1
    mine = [e for e in mod.got if e.fields["tgid"] == me]
    assert [e.probe for e in mine if e.probe == custom.name] == [custom.name]
    assert [e.probe for e in mine if e.probe == other.name] == [other.name] * 2
    assert kernel_fds() == fds_before


def test_bpf_refuses_reserved_names_and_missing_tracepoints():
    need_bpf()
    layout = (("x", "u32"),)
    with pytest.raises(InvalidArgument, match="moduled's own"):
        Bpf(GETPPID_PROBE, events="md_lost", layout=layout)
    with pytest.raises(InvalidArgument, match="moduled's own"):
        Bpf(
            "int f(void *ctx) { return 0; }",
            layout=layout,
            attach=(("tracepoint", "sched:sched_switch", "md_probe_0"),),
        )
    with pytest.raises(InvalidArgument, match="'md_lost_inc'"):
        Bpf("static int md_lost_inc(int s) { return 0; }", layout=layout)
    with pytest.raises(InvalidArgument, match="category:name"):
        Bpf(
            "int f(void *c) { return 0; }",
            layout=layout,
            attach=(("tracepoint", "sched_switch", "f"),),
        )
    ctx = md.Context("kt-bpf-bad")
    mod = md.Module(name="bad-attach")
    ctx.register(mod)
    mod.start()
    missing = Bpf(
        "int f(void *ctx) { return 0; }",
        layout=layout,
        attach=(("tracepoint", "sched:md_no_such_tp", "f"),),
    )

    with pytest.raises(NotFound, match="sched:md_no_such_tp"):
        mod.register(missing)
    assert mod.sources() == []


class _Lifecycle(md.Module):
    """Registers a tracepoint and a uprobe; ``then`` runs once attached."""

    def __init__(self, then, fail_on_evt=False):
        super().__init__(name=f"life-{uuid.uuid4().hex[:6]}")
        self.then = then
        self.fail_on_evt = fail_on_evt
        self.fds = None

    def on_start(self):
        self.register(
            Tracepoint("syscalls", "sys_enter_getppid", filter=f"tgid == {os.getpid()}")
        )
        self.register(Uprobe("c", "getpid", pid=os.getpid()))
        self._ctx._call_soon(self.go)

    def go(self):
        self.fds = kernel_fds()
        self.then(self)

    def on_evt(self, events):
        if self.fail_on_evt:
            raise RuntimeError("on_evt failed on purpose")


class _Watcher(md.Module):
    """Keeps the loop running; reads the fds 300 ms in, then quits."""

    def on_start(self):
        self._ctx._call_at(time.monotonic_ns() + 300_000_000, self.done)

    def done(self):
        self.fds = kernel_fds()
        self._ctx.quit(0)


@pytest.mark.parametrize("how", ["stop", "on_evt raises"])
def test_a_module_that_stops_leaves_no_probe_fd_while_the_loop_runs(how):
    need_bpf()
    fds_before = kernel_fds()

    def then(mod):
        if how == "stop":
            mod.stop()
        else:
            os.getppid()

    mod = _Lifecycle(then, fail_on_evt=how != "stop")
    watcher = _Watcher(name="watcher")
    ctx = md.Context("kt-life")
    ctx.register(mod)
    ctx.register(watcher)
    ctx.loop()

    assert mod.fds[PERF] - fds_before[PERF] == 2
    if how != "stop":
        assert mod.failure is not None
    assert watcher.fds == fds_before
    assert kernel_fds() == fds_before


def test_uprobe_checks_its_address_and_pid_and_names_a_missing_process():
    need_bpf()
    with pytest.raises(InvalidArgument, match="offset >= 0"):
        Uprobe("c", -4)
    with pytest.raises(InvalidArgument, match="positive process id"):
        Uprobe("c", "getpid", pid=True)
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
        no_such_pid = int(f.read())  # pids stay below pid_max
    ctx = md.Context("kt-uprobe-pid")
    mod = md.Module(name="bad-pid")
    ctx.register(mod)
    mod.start()

    with pytest.raises(NotFound, match=f"no process {no_such_pid}"):
        mod.register(Uprobe("c", "getpid", pid=no_such_pid))
    assert mod.sources() == []
