"""C code generation for declarative probes.

Every probe of a module's program gets a slot ``i``; its C uses only names
derived from the slot (``md_rec_i``, ``md_ring_i``, ``md_probe_i``, ...),
so probes never collide, and record members are prefixed ``f_`` so that a
field called ``errno`` or ``current`` cannot meet a kernel macro.

A probe function runs the filter on values loaded into locals first, and
only then reserves ring-buffer space: a filtered-out hit costs no ring
space.  When the reservation fails the slot's loss counter (an mmapable
array read by :class:`moduled.kernel.ringbuf.LostCounter`) is bumped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from . import filter as flt
from .record import Layout, LayoutField

__all__ = ["Value", "prelude", "probe_function"]

_INT_C = {
    (1, True): "s8",
    (2, True): "s16",
    (4, True): "s32",
    (8, True): "s64",
    (1, False): "u8",
    (2, False): "u16",
    (4, False): "u32",
    (8, False): "u64",
}

#: Built-in values every probe can filter on, and how to load them.
BUILTIN_FILTER_FIELDS = {
    "pid": flt.FilterField("int", 4, False),
    "tgid": flt.FilterField("int", 4, False),
    "uid": flt.FilterField("int", 4, False),
    "cgroup_id": flt.FilterField("int", 8, False),
    "ktime_ns": flt.FilterField("int", 8, False),
    "comm": flt.FilterField("str", 16),
}
_BUILTIN_LOAD = {
    "pid": "u64 v_pid = (u32)md_pt;",
    "tgid": "u64 v_tgid = md_pt >> 32;",
    "uid": "u64 v_uid = (u32)bpf_get_current_uid_gid();",
    "cgroup_id": "u64 v_cgroup_id = bpf_get_current_cgroup_id();",
    "ktime_ns": "u64 v_ktime_ns = bpf_ktime_get_ns();",
    "comm": "char v_comm[16] = {}; bpf_get_current_comm(v_comm, sizeof(v_comm));",
}


def c_int(size: int, signed: bool) -> str:
    return _INT_C[(size, signed)]


@dataclass(slots=True)
class Value:
    """A probe-specific value: how to load it for a filter, how to store it.

    ``load`` is a C expression of an integer (for numeric values, used in
    filters); ``store`` is C statements filling ``r->f_<name>``.
    """

    field: LayoutField
    store: str
    load: str | None = None
    filter_field: flt.FilterField | None = None


@dataclass(slots=True)
class ProbeCode:
    """Everything needed to emit one probe function."""

    slot: int
    layout: Layout
    values: Sequence[Value]
    ring_pages: int
    ctx_type: str = "void *ctx"
    filter_tree: flt.Node | None = None
    preamble: str = ""
    extra_checks: list[str] = field(default_factory=list)


def prelude(slots: int) -> str:
    """C shared by every probe of one program."""
    return f"""\
#include <uapi/linux/ptrace.h>
BPF_F_TABLE("array", u32, u64, md_lost, {max(slots, 1)}, BPF_F_MMAPABLE);
static __always_inline void md_lost_inc(u32 slot) {{
    u64 *c = md_lost.lookup(&slot);
    if (c) __sync_fetch_and_add(c, 1);
}}
#define MD_HEADER(r, pt) do {{ \\
    (r)->f_ktime_ns = bpf_ktime_get_ns(); \\
    (r)->f_cgroup_id = bpf_get_current_cgroup_id(); \\
    (r)->f_pid = (u32)(pt); (r)->f_tgid = (pt) >> 32; \\
    (r)->f_uid = (u32)bpf_get_current_uid_gid(); \\
    bpf_get_current_comm((r)->f_comm, sizeof((r)->f_comm)); }} while (0)
"""


def filter_fields(values: Sequence[Value]) -> dict[str, flt.FilterField]:
    """The fields a filter may name on a probe with these values."""
    fields = dict(BUILTIN_FILTER_FIELDS)
    for v in values:
        if v.filter_field is not None:
            fields[v.field.name] = v.filter_field
    return fields


def probe_function(code: ProbeCode) -> str:
    """Return the ring buffer, record struct and function of one probe."""
    i = code.slot
    lines = [
        code.layout.c_struct(f"md_rec_{i}"),
        f"BPF_RINGBUF_OUTPUT(md_ring_{i}, {code.ring_pages});",
        code.preamble,
        f"int md_probe_{i}({code.ctx_type}) {{",
        "    u64 md_pt = bpf_get_current_pid_tgid();",
        *(f"    {c}" for c in code.extra_checks),
    ]
    if code.filter_tree is not None:
        used = flt.fields_used(code.filter_tree)
        by_name = {v.field.name: v for v in code.values}
        for name in sorted(used):
            if name in by_name and by_name[name].load is not None:
                v = by_name[name]
                ctype = "s64" if v.filter_field and v.filter_field.signed else "u64"
                lines.append(f"    {ctype} v_{name} = {v.load};")
            else:
                lines.append(f"    {_BUILTIN_LOAD[name]}")
        cond = flt.compile_c(code.filter_tree, lambda n: f"v_{n}")
        lines.append(f"    if (!({cond})) return 0;")
    lines += [
        f"    struct md_rec_{i} *r = md_ring_{i}.ringbuf_reserve(sizeof(*r));",
        f"    if (!r) {{ md_lost_inc({i}); return 0; }}",
        "    MD_HEADER(r, md_pt);",
        *(f"    {v.store}" for v in code.values if v.store),
        f"    md_ring_{i}.ringbuf_submit(r, 0);",
        "    return 0;",
        "}",
        "",
    ]
    return "\n".join(lines)
