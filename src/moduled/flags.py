"""Flags, states and source types (libmodule's ``M_MOD_*`` / ``M_SRC_*``)."""

from __future__ import annotations

import enum

__all__ = ["ModFlag", "ModState", "SrcFlag", "SrcType"]


class ModFlag(enum.IntFlag):
    """Module flags, given at construction or as a class attribute."""

    ALLOW_REPLACE = 1 << 0
    """A module registered later under the same name replaces this one."""
    PERSIST = 1 << 1
    """The module cannot be deregistered while its context loops."""
    DENY_CTX = 1 << 2
    """The module may not reach its context through ``ctx``."""
    DENY_PUB = 1 << 3
    """The module may not tell, publish, broadcast or send poison pills."""
    DENY_SUB = 1 << 4
    """The module may not subscribe to topics."""
    THREADED = 1 << 5
    """``on_evt`` runs on a worker thread, one batch at a time per module;
    the calls it makes on modules and the context run on the loop thread."""


class ModState(enum.Enum):
    """The states of a module's life."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    ZOMBIE = "zombie"


class SrcType(enum.Enum):
    """What produced an event."""

    PS = "ps"
    FD = "fd"
    TIMER = "timer"
    SIGNAL = "signal"
    PATH = "path"
    PID = "pid"
    TASK = "task"
    THRESH = "thresh"
    PROBE = "probe"
    PROC = "proc"
    UEVENT = "uevent"
    RTNL = "rtnl"


class SrcFlag(enum.IntFlag):
    """Source flags.  Generic flags sit below bit 32, per-type ones above it."""

    PRIO_LOW = 1 << 0
    """Held until an event of higher priority flushes the batch."""
    PRIO_NORM = 1 << 1
    """Delivered per the module's batch settings (the default)."""
    PRIO_HIGH = 1 << 2
    """Delivered in the current dispatch round, flushing the batch with it."""
    ONESHOT = 1 << 3
    """Deregistered after its first event."""
    DUP = 1 << 4
    """Register a duplicate of the fd, leaving the caller's fd alone."""
    FORCE = 1 << 5
    """Replace a registered source with an equal key."""

    FD_AUTOCLOSE = 1 << 32
    """Fd sources: close the fd when the source is deregistered."""
    TMR_ABSOLUTE = 1 << 33
    """Timer sources: ``ns`` is an absolute time on the timer's clock."""


PRIO_MASK = SrcFlag.PRIO_LOW | SrcFlag.PRIO_NORM | SrcFlag.PRIO_HIGH


def priority(flags: SrcFlag) -> SrcFlag:
    """The one priority ``flags`` ask for: PRIO_NORM when they name none."""
    if flags & SrcFlag.PRIO_HIGH:
        return SrcFlag.PRIO_HIGH
    if flags & SrcFlag.PRIO_LOW and not flags & SrcFlag.PRIO_NORM:
        return SrcFlag.PRIO_LOW
    return SrcFlag.PRIO_NORM
