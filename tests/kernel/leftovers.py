"""What a probe could leave behind: kernel fds of this process, tracefs
probe entries.  bcc creates uprobes through perf_event_open, which leaves
nothing in uprobe_events, so the fds are the real check."""

from __future__ import annotations

import os

from moduled.kernel.tracefs import find_tracefs

_KINDS = ("anon_inode:[perf_event]", "anon_inode:bpf-prog", "anon_inode:bpf-map")


def kernel_fds() -> dict[str, int]:
    """How many perf event, BPF program and BPF map fds this process holds."""
    counts = dict.fromkeys(_KINDS, 0)
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in counts:
            counts[target] += 1
    return counts


def probe_entries() -> dict[str, str | None]:
    """uprobe_events and kprobe_events (None where the kernel has none)."""
    root = find_tracefs() or "/sys/kernel/tracing"
    out: dict[str, str | None] = {}
    for name in ("uprobe_events", "kprobe_events"):
        try:
            with open(os.path.join(root, name), encoding="ascii") as f:
                out[name] = f.read()
        except FileNotFoundError:
            out[name] = None
    return out
