"""Kernel sources: eBPF probes through bcc and netlink events through pyroute2.

Names are imported on first use so that ``import moduled`` never loads bcc
or pyroute2 (bcc is imported only when a probe's program is built).  The
stock probes (:func:`stock`, :data:`STOCK`) live in ``stock_probes.py``:
a submodule named ``stock`` would shadow the function.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "STOCK",
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
    "stock",
]

_WHERE = {
    "Bpf": "probe",
    "Kprobe": "probe",
    "ProbeEvent": "probe",
    "Tracepoint": "probe",
    "Uprobe": "probe",
    "STOCK": "stock_probes",
    "stock": "stock_probes",
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
