"""The classic sources: fds, timers, signals, paths, processes, tasks and
activity thresholds, plus the inotify masks (``IN_*``).

Every source subclasses :class:`moduled.sources.base.Source`; see that
module for the contract with the loop.
"""

from __future__ import annotations

from . import path as _path
from .base import Source
from .fd import Fd
from .path import *  # noqa: F403 - re-export Path and the IN_* masks
from .pid import Pid
from .signal import Signal
from .task import Task
from .thresh import Thresh
from .timer import Timer

__all__ = [  # noqa: PLE0604 - path's names are listed once, in path.py
    "Fd",
    "Pid",
    "Signal",
    "Source",
    "Task",
    "Thresh",
    "Timer",
    *_path.__all__,
]
