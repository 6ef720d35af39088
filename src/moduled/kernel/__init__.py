"""Kernel sources: eBPF probes through bcc and netlink events through pyroute2.

Names are imported on first use so that ``import moduled`` never loads bcc
or pyroute2.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Bpf",
    "Kprobe",
    "ProbeEvent",
    "ProcEvent",
    "ProcEvents",
    "Rtnl",
    "RtnlEvent",
    "Tracepoint",
    "Uevent",
    "UeventEvent",
    "Uprobe",
]

_WHERE = {
    "Bpf": "probe",
    "Kprobe": "probe",
    "ProbeEvent": "probe",
    "Tracepoint": "probe",
    "Uprobe": "probe",
    "ProcEvent": "netlink",
    "ProcEvents": "netlink",
    "Rtnl": "netlink",
    "RtnlEvent": "netlink",
    "Uevent": "netlink",
    "UeventEvent": "netlink",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'moduled.kernel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
