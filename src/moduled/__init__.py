"""moduled: a Linux event runtime of small actor modules, and its daemon.

A Pythonic port of the C actor library libmodule: modules registered in a
:class:`Context` react, in batches, to messages from other modules and to
events from sources (fds, timers, signals, paths, processes, tasks,
thresholds, and kernel events from eBPF and netlink).
"""

from __future__ import annotations

import importlib
from typing import Any

from . import log as _log
from .context import Context, CtxStats
from .errors import (
    AlreadyRegistered,
    InvalidArgument,
    ModuledError,
    NotFound,
    PermissionDenied,
    RateLimited,
    SourceUnavailable,
    StateError,
)
from .events import (
    Event,
    FdEvent,
    PathEvent,
    PidEvent,
    PsMessage,
    SignalEvent,
    TaskEvent,
    ThreshEvent,
    TimerEvent,
)
from .flags import ModFlag, ModState, SrcFlag, SrcType
from .log import set_loglevel
from .module import ModStats, Module
from .pubsub import CTX_STARTED, CTX_STOPPED, CTX_TICK, MOD_STARTED, MOD_STOPPED
from .sources.base import Source

__version__ = "0.1.0"

_log._configure_from_env()

_LAZY = {
    # classic sources: moduled.sources
    "Fd": "sources",
    "Timer": "sources",
    "Signal": "sources",
    "Path": "sources",
    "Pid": "sources",
    "Task": "sources",
    "Thresh": "sources",
    # kernel sources: moduled.kernel (bcc and pyroute2 load on first use)
    "Tracepoint": "kernel",
    "Kprobe": "kernel",
    "Uprobe": "kernel",
    "Bpf": "kernel",
    "ProbeEvent": "kernel",
    "ProcEvents": "kernel",
    "ProcEvent": "kernel",
    "Uevent": "kernel",
    "UeventEvent": "kernel",
    "Rtnl": "kernel",
    "RtnlEvent": "kernel",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None and name.startswith("IN_"):
        where = "sources"
    if where is None:
        raise AttributeError(f"module 'moduled' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CTX_STARTED",
    "CTX_STOPPED",
    "CTX_TICK",
    "MOD_STARTED",
    "MOD_STOPPED",
    "AlreadyRegistered",
    "Bpf",
    "Context",
    "CtxStats",
    "Event",
    "Fd",
    "FdEvent",
    "InvalidArgument",
    "Kprobe",
    "ModFlag",
    "ModState",
    "ModStats",
    "Module",
    "ModuledError",
    "NotFound",
    "Path",
    "PathEvent",
    "PermissionDenied",
    "Pid",
    "PidEvent",
    "ProbeEvent",
    "ProcEvent",
    "ProcEvents",
    "PsMessage",
    "RateLimited",
    "Rtnl",
    "RtnlEvent",
    "Signal",
    "SignalEvent",
    "Source",
    "SourceUnavailable",
    "SrcFlag",
    "SrcType",
    "StateError",
    "Task",
    "TaskEvent",
    "Thresh",
    "ThreshEvent",
    "Timer",
    "TimerEvent",
    "Tracepoint",
    "Uevent",
    "UeventEvent",
    "Uprobe",
    "set_loglevel",
]
