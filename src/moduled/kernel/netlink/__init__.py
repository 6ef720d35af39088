"""Netlink kernel sources: process events, uevents and rtnetlink.

Each source owns one nonblocking netlink multicast socket that the module's
context watches; every wakeup reads what is queued (at most
``MAX_BURST`` datagrams), decodes it and emits one batch.  Receive buffer
overruns (``ENOBUFS``) are counted as lost events and never stop a source.

* :class:`ProcEvents` - the proc connector (fork, exec, exit...).
* :class:`Uevent` - kernel device uevents.
* :class:`Rtnl` - link, address, route and neighbour changes.
"""

from __future__ import annotations

from ._socket import DEFAULT_RCVBUF, MAX_BURST
from .proc import ProcEvent, ProcEvents
from .rtnl import Rtnl, RtnlEvent
from .uevent import Uevent, UeventEvent

__all__ = [
    "DEFAULT_RCVBUF",
    "MAX_BURST",
    "ProcEvent",
    "ProcEvents",
    "Rtnl",
    "RtnlEvent",
    "Uevent",
    "UeventEvent",
]
