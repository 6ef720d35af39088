"""Events and the data each kind of source attaches to them.

An :class:`Event` is what ``on_evt`` receives, in batches.  Its ``data`` is
one of the small immutable records below, chosen by ``type``.  The same
event object (and the same message inside it) may reach several modules, so
treat both as read-only; keeping an event past ``on_evt`` (``stash``) is
fine.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .flags import SrcType

__all__ = [
    "Event",
    "FdEvent",
    "PathEvent",
    "PidEvent",
    "PsMessage",
    "SignalEvent",
    "TaskEvent",
    "ThreshEvent",
    "TimerEvent",
]


class Event:
    """One event delivered to a module.

    Attributes:
        type: the :class:`SrcType` of the source that produced it.
        data: the source's record (``PsMessage``, ``FdEvent``, ...).
        userdata: the userdata given when the source or subscription was
            registered.
        ts: ``time.monotonic_ns()`` when the event was queued.
        replayed: True when the event comes from a recording.
    """

    __slots__ = ("data", "replayed", "ts", "type", "userdata")

    def __init__(
        self,
        type: SrcType,
        data: Any,
        userdata: Any,
        ts: int,
        replayed: bool = False,
    ) -> None:
        self.type = type
        self.data = data
        self.userdata = userdata
        self.ts = ts
        self.replayed = replayed

    def __repr__(self) -> str:
        extra = ", replayed=True" if self.replayed else ""
        return f"Event({self.type.name}, {self.data!r}, ts={self.ts}{extra})"


class PsMessage(NamedTuple):
    """A message sent with tell, publish or broadcast.

    ``sender`` is the sending module (None for messages the context itself
    publishes); ``topic`` is None for tells and broadcasts.
    """

    sender: Any
    topic: str | None
    message: Any


class FdEvent(NamedTuple):
    """An fd became readable."""

    fd: int


class TimerEvent(NamedTuple):
    """A timer expired ``expirations`` times since it was last reported."""

    ns: int
    expirations: int


class SignalEvent(NamedTuple):
    """A signal arrived."""

    signo: int


class PathEvent(NamedTuple):
    """An inotify event: ``path`` is the watched directory or file, ``name``
    the entry inside it ('' for the watched path itself)."""

    path: str
    name: str
    mask: int
    cookie: int


class PidEvent(NamedTuple):
    """A process exited; ``exit_status`` is known only for our own children."""

    pid: int
    exit_status: int | None


class TaskEvent(NamedTuple):
    """A task finished, with its result or the exception it raised."""

    tid: int
    result: Any
    exception: BaseException | None


class ThreshEvent(NamedTuple):
    """A module crossed an activity threshold: the values that were crossed
    (the other one is 0)."""

    inactive_ms: int
    activity_freq: float
