"""Device events (uevents) straight from the kernel.

The kernel announces every kobject change (a device added, removed, bound,
changed...) on the ``NETLINK_KOBJECT_UEVENT`` family.  Kernel facts this
source relies on:

* Multicast group 1 carries the kernel's own messages; udev re-broadcasts
  its processed version (with its own database properties) on group 2 in a
  binary format that starts with ``libudev``.  We join group 1 only, and
  still skip anything that starts with ``libudev`` or does not come from
  the kernel (sender port id 0).
* A kernel message is ``ACTION@DEVPATH`` followed by NUL-separated
  ``KEY=VALUE`` pairs (``ACTION``, ``DEVPATH``, ``SUBSYSTEM``, ``SEQNUM`` and
  whatever the subsystem adds: ``INTERFACE``, ``IFINDEX``, ``DEVNAME``...).
* Anyone may listen; no capability is needed.  Network device uevents are
  sent in the device's network namespace, others in the initial one.
* A burst (a USB hub with many devices, a module load) can overrun the
  receive buffer: ``ENOBUFS``, counted as a loss (see ``_socket``).
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar, NamedTuple

from ...errors import InvalidArgument
from ...flags import SrcType
from ._socket import DEFAULT_RCVBUF, NetlinkSource

__all__ = ["Uevent", "UeventEvent", "decode_uevent"]

NETLINK_KOBJECT_UEVENT = 15
#: The kernel's multicast group; udev's (libudev-formatted) one is 2.
KERNEL_GROUP = 1


class UeventEvent(NamedTuple):
    """One kernel uevent.

    ``action`` is ``add``, ``remove``, ``change``, ``move``, ``online``,
    ``offline``, ``bind`` or ``unbind``; ``devpath`` is relative to
    ``/sys``; ``env`` holds every ``KEY=VALUE`` pair of the message
    (including ``ACTION``, ``DEVPATH``, ``SUBSYSTEM`` and ``SEQNUM``).
    """

    action: str
    subsystem: str | None
    devpath: str
    env: dict[str, str]


def decode_uevent(data: bytes | bytearray | memoryview) -> UeventEvent | None:
    """Decode one kernel uevent datagram; None for anything else."""
    raw = bytes(data)
    if raw.startswith(b"libudev"):
        return None
    parts = raw.split(b"\0")
    head = parts[0].decode("utf-8", "replace")
    if "@" not in head:
        return None
    env: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition(b"=")
        if sep:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    head_action, _, head_path = head.partition("@")
    return UeventEvent(
        env.get("ACTION", head_action),
        env.get("SUBSYSTEM"),
        env.get("DEVPATH", head_path),
        env,
    )


class Uevent(NetlinkSource):
    """Kernel uevents, optionally of one subsystem only.

    Args:
        subsystem: report only uevents whose ``SUBSYSTEM`` equals this
            (``"net"``, ``"block"``, ``"usb"``...); None reports all.
        rcvbuf: the socket receive buffer in bytes.

    Raises:
        InvalidArgument: a bad subsystem or rcvbuf.
        SourceUnavailable: at registration, when the kernel has no uevent
            netlink family here.
    """

    type: ClassVar[SrcType] = SrcType.UEVENT

    def __init__(
        self, subsystem: str | None = None, *, rcvbuf: int = DEFAULT_RCVBUF
    ) -> None:
        if subsystem is not None and (
            not isinstance(subsystem, str)
            or not subsystem
            or any(c in subsystem for c in "\0=/")
        ):
            raise InvalidArgument(
                f"Uevent: subsystem {subsystem!r} must be a subsystem name such "
                "as 'net' or 'block', or None for all"
            )
        super().__init__(rcvbuf)
        self._subsystem = subsystem
        self._needle = (
            None if subsystem is None else f"\0SUBSYSTEM={subsystem}\0".encode()
        )
        self._skipped = 0

    @property
    def key(self) -> str | None:
        return self._subsystem

    @property
    def subsystem(self) -> str | None:
        """The subsystem reported, or None for all."""
        return self._subsystem

    def _open(self) -> socket.socket:
        what = "uevent"
        sock = self._new_socket(NETLINK_KOBJECT_UEVENT, what)
        self._bind_groups(sock, KERNEL_GROUP, what)
        return sock

    def _decode(self, data: memoryview, out: list[Any]) -> None:
        raw = data.tobytes()
        needle = self._needle
        if needle is not None and needle not in raw:
            return  # another subsystem: not worth decoding
        ev = decode_uevent(raw)
        if ev is None:
            self._skipped += 1
        elif self._subsystem is None or ev.subsystem == self._subsystem:
            out.append(ev)

    def _dump(self) -> dict[str, Any]:
        d = super()._dump()
        d["subsystem"] = self._subsystem
        d["skipped"] = self._skipped
        return d
