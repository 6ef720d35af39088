"""eBPF probes for real: tracepoints, uprobes, filters, loss, cleanup.

One module-scoped run compiles most probes into a single program (a bcc
compile costs about half a second), then each test checks its own part.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import uuid

import pytest
from tests.conftest import need_root
from tests.kernel.leftovers import kernel_fds, probe_entries

import moduled as md
from moduled.errors import InvalidArgument, NotFound, SourceUnavailable
from moduled.kernel import doctor
from moduled.kernel.codegen import prelude
from moduled.kernel.probe import Bpf, Kprobe, Tracepoint, Uprobe

pytestmark = pytest.mark.kernel

UPROBE_EVENTS = "/sys/kernel/tracing/uprobe_events"
#: kill(2)'s number, to find it among raw_syscalls:sys_enter records.
SYS_KILL = {"x86_64": 62, "aarch64": 129}
GETPPID_PROBE = """
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    RECORD *r = events.ringbuf_reserve(sizeof(*r));
    if (!r) { LOST(); return 0; }
    FILL_HEADER(r);
    r->f_nr = args->__syscall_nr;
    events.ringbuf_submit(r, 0);
    return 0;
}
"""


def need_bpf() -> None:
    need_root()
    for c in doctor.check():
        if c.name in ("tracefs", "bcc", "headers", "ringbuf", "uprobes") and not c.ok:
            pytest.skip(f"needs {c.name}: {c.detail}")


def uprobe_events() -> str:
    with open(UPROBE_EVENTS, encoding="ascii") as f:
        return f.read()


class Collector(md.Module):
    """Registers sources, runs ``action`` once they are attached, then quits."""

    def __init__(self, sources, action):
        super().__init__(name=f"probes-{uuid.uuid4().hex[:6]}")
        self.to_register = sources
        self.action = action
        self.got = []
        self.tagged = []
        self.during = None

    def on_start(self):
        for i, src in enumerate(self.to_register):
            self.register(src, userdata=i)
        self._ctx._call_soon(self._run)

    def _run(self):
        self.during = self.action(self)
        for src in self.to_register:
            src._flush()
        self._ctx._call_soon(lambda: self._ctx.quit(0))

    def on_evt(self, events):
        self.got.extend(ev.data for ev in events)
        self.tagged.extend((ev.userdata, ev.data) for ev in events)


def run(sources, action):
    ctx = md.Context("kt")
    mod = Collector(sources, action)
    ctx.register(mod)
    assert ctx.loop() == 0
    return mod


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    need_bpf()
    before = uprobe_events()
    fds_before, entries_before = kernel_fds(), probe_entries()
    binary = tmp_path_factory.mktemp("exec") / f"mdtrue_{uuid.uuid4().hex[:6]}"
    shutil.copy("/bin/true", binary)
    me = os.getpid()
    srcs = {
        "exec": Tracepoint("sched", "sched_process_exec"),
        "include": Tracepoint("syscalls", "sys_enter_getppid", filter=f"tgid == {me}"),
        "exclude": Tracepoint(
            "syscalls", "sys_enter_getppid", filter=f"tgid == {me} && comm != 'kt'"
        ),
        "getpid": Uprobe("c", "getpid", ret=True),
        "kill": Uprobe("c", "kill", args=(("target", "int"), ("sig", "int"))),
        "custom": Bpf(
            GETPPID_PROBE, layout=(("nr", "s32"),), header=True, name="getppid"
        ),
        "raw_enter": Tracepoint("raw_syscalls", "sys_enter", filter=f"tgid == {me}"),
        "switch": Tracepoint(
            "sched",
            "sched_switch",
            fields=("prev_comm", "prev_pid", "next_comm"),
            filter=f"prev_pid == {me}",
        ),
    }
    child = (
        "import os, signal; print(os.getpid()); os.getpid(); os.kill(os.getpid(), 0)"
    )

    def action(mod):
        states = {k: s.state for k, s in srcs.items()}
        programs = {id(s._program) for s in srcs.values()}
        subprocess.run([str(binary)], check=True)
        for _ in range(7):
            os.getppid()
        os.kill(me, 0)
        out = subprocess.run(
            [sys.executable, "-c", child], check=True, capture_output=True, text=True
        )
        return {
            "states": states,
            "programs": programs,
            "child": int(out.stdout),
            "events": uprobe_events(),
            "fds": kernel_fds(),
        }

    mod = run(list(srcs.values()), action)
    by = {k: [e for tag, e in mod.tagged if tag == i] for i, k in enumerate(srcs)}
    return {
        "mod": mod,
        "srcs": srcs,
        "by": by,
        "binary": str(binary),
        "before": before,
        "after": uprobe_events(),
        "fds": (fds_before, kernel_fds()),
        "entries": (entries_before, probe_entries()),
    }


def test_probes_registered_in_one_round_attach_together(shared):
    assert set(shared["mod"].during["states"].values()) == {"attached"}
    assert shared["mod"].failure is None


def test_probes_registered_in_one_round_share_one_program(shared):
    assert len(shared["mod"].during["programs"]) == 1


def test_a_fixed_array_field_is_a_list_of_its_integers(shared):
    me = os.getpid()
    kill = SYS_KILL.get(platform.machine())
    if kill is None:
        pytest.skip(f"needs kill(2)'s number on {platform.machine()}")

    hits = [e.fields for e in shared["by"]["raw_enter"] if e.fields["id"] == kill]

    assert [f["args"][:2] for f in hits] == [[me, 0]]
    assert len(hits[0]["args"]) == 6
    assert all(isinstance(a, int) for a in hits[0]["args"])


def test_a_fixed_char_array_field_is_a_string(shared):
    hits = [e.fields for e in shared["by"]["switch"]]

    assert hits and all(f["prev_comm"] == f["comm"] for f in hits)
    assert {f["prev_pid"] for f in hits} == {os.getpid()}
    assert all(isinstance(f["next_comm"], str) for f in hits)


def test_exec_of_a_uniquely_named_binary_is_seen_with_filename_and_tgid(shared):
    name = os.path.basename(shared["binary"])

    hits = [e for e in shared["by"]["exec"] if e.fields["filename"] == shared["binary"]]

    assert len(hits) == 1
    f = hits[0].fields
    assert f["comm"] == name[:15]
    assert f["tgid"] > 0 and f["tp_pid"] == f["tgid"]
    assert set(f) >= {"pid", "tgid", "uid", "comm", "cgroup_id", "ktime_ns"}


def test_a_filter_that_includes_passes_exactly_the_matching_calls(shared):
    hits = shared["by"]["include"]

    assert len(hits) == 7
    assert {e.fields["tgid"] for e in hits} == {os.getpid()}


def test_a_filter_that_excludes_passes_nothing(shared):
    assert shared["by"]["exclude"] == []


def test_uretprobe_on_libc_reports_the_return_value(shared):
    child = shared["mod"].during["child"]

    hits = [e for e in shared["by"]["getpid"] if e.fields["tgid"] == child]

    assert hits and all(e.fields["retval"] == child for e in hits)


def test_uprobe_arguments_are_decoded_as_declared(shared):
    child = shared["mod"].during["child"]

    hits = [e for e in shared["by"]["kill"] if e.fields["tgid"] == child]

    assert [(e.fields["target"], e.fields["sig"]) for e in hits] == [(child, 0)]


def test_custom_bpf_records_are_decoded_by_the_declared_layout(shared):
    hits = [e for e in shared["by"]["custom"] if e.fields["tgid"] == os.getpid()]

    assert len(hits) == 7
    assert all(e.fields["nr"] > 0 for e in hits)


def test_no_probe_is_left_attached_when_the_loop_exits(shared):
    # bcc attaches uprobes through perf events here (nothing ever appears in
    # uprobe_events), so the fds are the proof; tracefs is checked as well.
    before, after = shared["fds"]
    during = shared["mod"].during["fds"]

    assert during["anon_inode:[perf_event]"] > before["anon_inode:[perf_event]"]
    assert during["anon_inode:bpf-prog"] > before["anon_inode:bpf-prog"]
    assert after == before
    assert shared["entries"][1] == shared["entries"][0]
    assert shared["after"] == shared["before"]


def test_source_dump_counts_events_and_losses(shared):
    d = shared["srcs"]["include"].dump()

    assert d["events"] == 7 and d["lost"] == 0
    assert d["probe"] == "tracepoint:syscalls:sys_enter_getppid"


def test_a_tiny_ring_loses_records_and_accounts_for_every_one():
    need_bpf()
    me = os.getpid()
    storm = Tracepoint(
        "syscalls", "sys_enter_getppid", filter=f"tgid == {me}", ring_pages=1
    )
    marker = Uprobe("c", "getpid", pid=me)
    before, fds_before = uprobe_events(), kernel_fds()
    calls = 5000
    perf = "anon_inode:[perf_event]"

    def action(mod):
        for _ in range(calls):
            os.getppid()
        storm._flush()
        attached = kernel_fds()[perf]
        mod.deregister(marker)
        return uprobe_events(), attached, kernel_fds()[perf]

    mod = run([storm, marker], action)

    delivered = [e for e in mod.got if e.probe == storm.name]
    assert storm.lost > 0
    assert len(delivered) + storm.lost == calls
    assert mod.stats().lost_events >= storm.lost
    events, attached, after_deregister = mod.during
    assert events == before
    assert attached - after_deregister == 1  # the uprobe's, not the tracepoint's
    assert kernel_fds() == fds_before


def test_unknown_tracepoint_and_field_fail_at_register_naming_them():
    need_bpf()
    ctx = md.Context("kt-bad")
    mod = Collector([], lambda m: None)
    ctx.register(mod)
    mod.start()

    with pytest.raises(NotFound, match=r"no_such_tp.*available_events"):
        mod.register(Tracepoint("sched", "no_such_tp"))
    with pytest.raises(NotFound, match="no field 'nope'"):
        mod.register(Tracepoint("sched", "sched_process_exec", fields=["nope"]))
    with pytest.raises(InvalidArgument, match="unknown field 'bogus'"):
        mod.register(Tracepoint("sched", "sched_process_exec", filter="bogus == 1"))
    with pytest.raises(InvalidArgument, match="unexpected"):
        mod.register(
            Tracepoint("sched", "sched_process_exec", filter="pid == 1; } int x() {")
        )
    assert mod.sources() == []


def test_kprobe_registers_only_where_the_kernel_has_kprobes():
    need_bpf()
    has_kprobes = doctor.check_kprobes().ok
    probe = Kprobe("do_sys_openat2", args=(("dfd", "int"), ("path", "user char*")))

    if not has_kprobes:
        ctx = md.Context("kt-kp")
        mod = Collector([], lambda m: None)
        ctx.register(mod)
        mod.start()
        with pytest.raises(SourceUnavailable) as info:
            mod.register(probe)
        assert "CONFIG_KPROBES" in str(info.value)
        assert "sys_enter_openat" in str(info.value)
        assert mod.sources() == []
        return

    def action(mod):
        with open("/etc/hostname", encoding="ascii"):
            pass

    mod = run([probe], action)
    assert any(e.fields["path"] == "/etc/hostname" for e in mod.got)


def test_kprobe_code_passes_the_kernel_verifier():
    need_bpf()
    from bcc import BPF

    probe = Kprobe(
        "do_sys_openat2",
        args=(("dfd", "int"), ("path", "user char*")),
        ret=True,
        filter="dfd != 5 && retval >= 0",
    )
    text = prelude(1) + probe._c_code(0)

    bpf = BPF(text=text.encode(), cflags=["-w"])
    try:
        bpf.load_func(b"md_probe_0", BPF.KPROBE)
        bpf.load_func(b"md_entry_0", BPF.KPROBE)
    finally:
        bpf.cleanup()


def test_every_stock_probe_matches_this_kernels_tracepoints():
    need_bpf()
    from moduled.kernel.probe import STOCK, stock

    for name in STOCK:
        src = stock(name)
        src._prepare()
        assert src._layout is not None, name
    with pytest.raises(NotFound, match="choose one of"):
        stock("nope")
