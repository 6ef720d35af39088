"""Network configuration changes from rtnetlink.

The kernel multicasts every change of links, addresses, routes and
neighbours on ``NETLINK_ROUTE``, one group per object and address family.
Kernel facts this source relies on:

* The groups are the legacy ``RTMGRP_*`` bitmask given to ``bind``:
  ``link`` is ``RTMGRP_LINK``, ``addr`` is ``RTMGRP_IPV4_IFADDR |
  RTMGRP_IPV6_IFADDR``, ``route`` is ``RTMGRP_IPV4_ROUTE |
  RTMGRP_IPV6_ROUTE``, ``neigh`` is ``RTMGRP_NEIGH``.  Anyone may listen;
  only the caller's network namespace is seen.
* Each message is an ``nlmsghdr`` with type ``RTM_NEW*`` or ``RTM_DEL*``
  (a changed link is a ``RTM_NEWLINK`` too), a fixed family header and
  attributes.  One datagram may hold several messages.  The attributes are
  decoded by pyroute2's message classes (``ifinfmsg``, ``ifaddrmsg``,
  ``rtmsg``, ``ndmsg``), whose interface is the same in 0.7 and 0.9; the
  socket is our own.  Index and link name come from our own parsing, so
  they survive attributes pyroute2 does not know.
* Addresses, routes and neighbours name their link by index only.  We keep
  the names seen in link messages (when the ``link`` group is on) and
  otherwise ask ``if_indextoname``; a deleted link may leave events naming
  an index that no longer resolves (``name`` None).
* After ``ENOBUFS`` (see ``_socket``) the link name cache may be stale and
  is dropped.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from typing import Any, ClassVar, NamedTuple

from ...errors import SourceUnavailable
from ...flags import SrcType
from ._socket import DEFAULT_RCVBUF, NetlinkSource, check_names

__all__ = ["GROUPS", "Rtnl", "RtnlDecoder", "RtnlEvent"]

NETLINK_ROUTE = 0

#: Group name -> the ``RTMGRP_*`` bits it joins.
GROUPS: dict[str, int] = {
    "link": 0x1,  # RTMGRP_LINK
    "neigh": 0x4,  # RTMGRP_NEIGH
    "addr": 0x10 | 0x100,  # RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
    "route": 0x40 | 0x400,  # RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
}

#: nlmsg type -> (group, action).
_TYPES: dict[int, tuple[str, str]] = {
    16: ("link", "new"),
    17: ("link", "del"),
    20: ("addr", "new"),
    21: ("addr", "del"),
    24: ("route", "new"),
    25: ("route", "del"),
    28: ("neigh", "new"),
    29: ("neigh", "del"),
}
#: Size of each group's fixed header after the nlmsghdr.
_FIXED = {"link": 16, "addr": 8, "route": 12, "neigh": 12}
_IFLA_IFNAME = 3
_RTA_OIF = 4

_NLMSGHDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
_I32 = struct.Struct("=i")


class RtnlEvent(NamedTuple):
    """One rtnetlink change.

    ``group`` is ``link``, ``addr``, ``route`` or ``neigh``; ``action``
    ``new`` (also for a changed object) or ``del``; ``index`` the interface
    index (None for a route without an output interface); ``name`` the
    interface name, best effort.  ``attrs`` maps the fixed header's fields
    (``family``, ``flags``, ``prefixlen``...) and the attributes by their
    kernel names (``IFLA_MTU``, ``IFA_ADDRESS``, ``RTA_DST``, ``NDA_LLADDR``)
    to decoded values; nested attributes are dicts, repeated ones lists.
    """

    group: str
    action: str
    index: int | None  # type: ignore[assignment] # the DESIGN's name
    name: str | None
    attrs: dict[str, Any]


def _attr(data: memoryview, start: int, end: int, want: int) -> memoryview | None:
    """Return the payload of the first attribute of type ``want``."""
    while start + 4 <= end:
        length, typ = _NLA.unpack_from(data, start)
        if length < 4 or start + length > end:
            return None
        if typ & 0x3FFF == want:
            return data[start + 4 : start + length]
        start += (length + 3) & ~3
    return None


def _cstr(raw: memoryview) -> str:
    """A NUL-terminated attribute as text (names are bytes to the kernel)."""
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def _plain(value: Any) -> Any:
    """Turn pyroute2's decoded values into plain dicts, lists and scalars."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("attrs", "header", "value") or k.startswith("__"):
                continue
            out[k] = _plain(v)
        for nla in value.get("attrs", ()):
            name, v = nla[0], nla[1]
            if name == "UNKNOWN":
                continue
            v = _plain(v)
            if name in out:
                prev = out[name]
                out[name] = [*prev, v] if isinstance(prev, list) else [prev, v]
            else:
                out[name] = v
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (int, float, str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value)


class RtnlDecoder:
    """Decode rtnetlink datagrams into :class:`RtnlEvent` records.

    Keeps the link name cache; not thread-safe.
    """

    def __init__(self, groups: Iterable[str], use_cache: bool) -> None:
        # Imported here: pyroute2 takes ~150 ms to import, and only Rtnl needs it.
        try:
            from pyroute2.netlink.rtnl.ifaddrmsg import (
                ifaddrmsg,
            )
            from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
            from pyroute2.netlink.rtnl.ndmsg import ndmsg
            from pyroute2.netlink.rtnl.rtmsg import rtmsg
        except ImportError as exc:
            raise SourceUnavailable(
                f"rtnetlink: pyroute2 cannot be imported ({exc}); install "
                "python3-pyroute2 or pip install pyroute2"
            ) from exc
        self._classes = {
            "link": ifinfmsg,
            "addr": ifaddrmsg,
            "route": rtmsg,
            "neigh": ndmsg,
        }
        self._groups = frozenset(groups)
        self._use_cache = use_cache
        self.names: dict[int, str] = {}
        self.undecodable = 0

    def decode(self, data: memoryview, out: list[RtnlEvent]) -> None:
        """Append an event for each wanted message of one datagram."""
        end = len(data)
        off = 0
        while off + _NLMSGHDR.size <= end:
            length, typ = _NLMSGHDR.unpack_from(data, off)[:2]
            if length < _NLMSGHDR.size or off + length > end:
                break
            kind = _TYPES.get(typ)
            if kind is not None and kind[0] in self._groups:
                ev = self._message(data[off : off + length], *kind)
                if ev is not None:
                    out.append(ev)
            off += (length + 3) & ~3

    def _message(self, msg: memoryview, group: str, action: str) -> RtnlEvent | None:
        hdr = _NLMSGHDR.size
        fixed = hdr + _FIXED[group]
        if len(msg) < fixed:
            return None

        # Index and name by hand: they must not depend on pyroute2.
        if group == "route":
            oif = _attr(msg, fixed, len(msg), _RTA_OIF)
            index = (
                _I32.unpack_from(oif)[0] if oif is not None and len(oif) >= 4 else None
            )
        else:
            index = _I32.unpack_from(msg, hdr + 4)[0]
        if group == "link":
            raw = _attr(msg, fixed, len(msg), _IFLA_IFNAME)
            name = None if raw is None else _cstr(raw)
            if self._use_cache and name is not None and index is not None:
                if action == "del":
                    self.names.pop(index, None)
                else:
                    self.names[index] = name
        else:
            name = self.name_of(index)

        try:
            parsed = self._classes[group](bytes(msg))
            parsed.decode()
            attrs = _plain(parsed)
        except Exception:  # pyroute2 failed: keep the event, lose the attributes
            self.undecodable += 1
            attrs = {}
        return RtnlEvent(group, action, index, name, attrs)

    def name_of(self, index: int | None) -> str | None:
        """The name of link ``index``, from the cache or the kernel."""
        if not index:
            return None
        name = self.names.get(index)
        if name is not None:
            return name
        try:
            name = socket.if_indextoname(index)
        except OSError:
            return None
        if self._use_cache:
            self.names[index] = name
        return name


class Rtnl(NetlinkSource):
    """Link, address, route and neighbour changes from rtnetlink.

    Args:
        groups: any of ``link``, ``addr``, ``route``, ``neigh``; each joins
            the IPv4 and IPv6 groups where both exist.
        rcvbuf: the socket receive buffer in bytes.

    Raises:
        InvalidArgument: an unknown group or a bad rcvbuf.
        SourceUnavailable: at registration, when pyroute2 is missing or the
            kernel refuses the socket.
    """

    type: ClassVar[SrcType] = SrcType.RTNL
    _bufsize = 256 << 10

    def __init__(
        self,
        groups: Iterable[str] = ("link", "addr", "route"),
        *,
        rcvbuf: int = DEFAULT_RCVBUF,
    ) -> None:
        self._groups = check_names("Rtnl", "groups", groups, GROUPS)
        super().__init__(rcvbuf)
        self._decoder: RtnlDecoder | None = None

    @property
    def key(self) -> tuple[str, ...]:
        return self._groups

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups this source reports, sorted."""
        return self._groups

    def _open(self) -> socket.socket:
        what = "rtnetlink"
        # Names are cached only when link messages keep the cache honest.
        self._decoder = RtnlDecoder(self._groups, "link" in self._groups)
        mask = 0
        for g in self._groups:
            mask |= GROUPS[g]
        sock = self._new_socket(NETLINK_ROUTE, what)
        self._bind_groups(sock, mask, what)
        return sock

    def _decode(self, data: memoryview, out: list[Any]) -> None:
        decoder = self._decoder
        if decoder is not None:
            decoder.decode(data, out)

    def _on_overrun(self) -> None:
        if self._decoder is not None:
            self._decoder.names.clear()

    def _dump(self) -> dict[str, Any]:
        d = super()._dump()
        d["groups"] = list(self._groups)
        if self._decoder is not None:
            d["undecodable"] = self._decoder.undecodable
        return d
