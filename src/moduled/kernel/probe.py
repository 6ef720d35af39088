"""eBPF probe sources: tracepoints, uprobes, kprobes, custom BPF C, stock probes.

The public names of DESIGN §3, gathered from the files that implement them:
:class:`Tracepoint` (``tracepoint.py``), :class:`Uprobe` and
:class:`Kprobe` (``argprobe.py``), :class:`Bpf` (``custom.py``), the
records (:class:`ProbeEvent`, ``record.py``) and the stock probes
(:func:`stock`, ``stock_probes.py``).  Importing this module does not import bcc;
the first program built does.
"""

from __future__ import annotations

from .argprobe import Kprobe, Uprobe
from .custom import Bpf
from .probe_base import DEFAULT_RING_PAGES, ProbeSource
from .record import ProbeEvent
from .stock_probes import STOCK, stock
from .tracepoint import Tracepoint

__all__ = [
    "DEFAULT_RING_PAGES",
    "STOCK",
    "Bpf",
    "Kprobe",
    "ProbeEvent",
    "ProbeSource",
    "Tracepoint",
    "Uprobe",
    "stock",
]
