"""The part every netlink source shares: socket, receive loop and overruns.

A netlink multicast listener is a datagram socket whose receive queue the
kernel fills whether or not anybody reads it.  When the queue would exceed
the socket's receive buffer the kernel drops the message and makes the next
``recv`` fail once with ``ENOBUFS``; how many messages were dropped is not
said.  Reading then simply goes on.  :class:`NetlinkSource` counts each
``ENOBUFS`` as one lost event (the true count is unknown and at least one),
keeps an ``overruns`` counter for dumps, logs a warning and keeps reading.
The cure is a larger buffer, so the socket asks for a generous one
(``SO_RCVBUFFORCE`` when privileged, which may exceed ``net.core.rmem_max``;
plain ``SO_RCVBUF``, capped by that sysctl, otherwise).

Every datagram is checked to come from the kernel (sender port id 0):
privileged processes may multicast on these families too, and udev does on
the uevent family.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import InvalidArgument, SourceUnavailable
from ...sources.base import Source

__all__ = [
    "DEFAULT_RCVBUF",
    "MAX_BURST",
    "NetlinkSource",
    "check_names",
    "check_rcvbuf",
]

log = logging.getLogger(__name__)

#: Receive buffer asked for unless the caller says otherwise (4 MiB).
DEFAULT_RCVBUF = 4 << 20
#: Datagrams read per wakeup at most; the fd stays readable for the rest.
MAX_BURST = 256

#: Seconds between two overrun warnings of one source.
_WARN_EVERY = 1.0
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def check_rcvbuf(owner: str, rcvbuf: object) -> int:
    """Validate a receive buffer size in bytes; return it."""
    if isinstance(rcvbuf, bool) or not isinstance(rcvbuf, int):
        raise InvalidArgument(
            f"{owner}: rcvbuf {rcvbuf!r} is not an int; give a size in bytes"
        )
    if rcvbuf <= 0 or rcvbuf > 1 << 30:
        raise InvalidArgument(
            f"{owner}: rcvbuf {rcvbuf} is out of range; give 1 to {1 << 30} bytes"
        )
    return rcvbuf


def check_names(
    owner: str, what: str, names: object, valid: Mapping[str, int]
) -> tuple[str, ...]:
    """Validate a collection of names (kinds, groups); return them sorted.

    ``what`` is the plural noun used in messages ("kinds", "groups").
    """
    choices = ", ".join(valid)
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise InvalidArgument(
            f"{owner}: {what} {names!r} must be a collection of names such as "
            f"{tuple(valid)[:2]!r}; valid {what}: {choices}"
        )
    given = list(names)
    bad = [n for n in given if not isinstance(n, str) or n not in valid]
    if bad:
        raise InvalidArgument(
            f"{owner}: unknown {what[:-1]} {bad[0]!r}; valid {what}: {choices}"
        )
    if not given:
        raise InvalidArgument(f"{owner}: no {what} given; valid {what}: {choices}")
    return tuple(sorted(set(given)))


class NetlinkSource(Source):
    """A source reading one netlink multicast socket on the loop thread.

    Subclasses implement :meth:`_open` (create and bind the socket, raising
    ``SourceUnavailable`` when the kernel refuses) and :meth:`_decode`
    (append the event records of one datagram to a list).
    """

    #: Starting size of the receive buffer in user space; grows on truncation.
    _bufsize = 64 << 10

    def __init__(self, rcvbuf: int) -> None:
        self._rcvbuf = check_rcvbuf(type(self).__name__, rcvbuf)
        self._sock: socket.socket | None = None
        self._buf = bytearray(self._bufsize)
        self._view = memoryview(self._buf)
        self._overruns = 0
        self._warned_at = -_WARN_EVERY
        self._foreign = 0
        self._malformed = 0

    # -- subclass hooks -------------------------------------------------------

    @abc.abstractmethod
    def _open(self) -> socket.socket:
        """Create, configure and bind the socket; return it."""

    @abc.abstractmethod
    def _decode(self, data: memoryview, out: list[Any]) -> None:
        """Append the records carried by one kernel datagram to ``out``."""

    def _on_overrun(self) -> None:
        """Called after each ENOBUFS, once counted; forget stale caches."""

    # -- attach / detach --------------------------------------------------------

    def _new_socket(self, protocol: int, what: str) -> socket.socket:
        """Open a nonblocking netlink socket of ``protocol`` with our rcvbuf."""
        try:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, protocol
            )
        except OSError as exc:
            raise SourceUnavailable(
                f"{what}: cannot open the netlink socket ({exc.strerror}); "
                "the kernel lacks this netlink family in this network namespace"
            ) from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self._rcvbuf)
        except PermissionError:
            # Unprivileged: the size is capped by net.core.rmem_max.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
        return sock

    def _bind_groups(self, sock: socket.socket, groups: int, what: str) -> None:
        """Bind ``sock`` to the multicast ``groups`` bitmask."""
        try:
            sock.bind((0, groups))
        except PermissionError as exc:
            sock.close()
            raise SourceUnavailable(
                f"{what}: joining the multicast group was refused "
                f"({exc.strerror}); it needs CAP_NET_ADMIN, run as root"
            ) from exc
        except OSError as exc:
            sock.close()
            raise SourceUnavailable(
                f"{what}: cannot bind the netlink socket ({exc.strerror})"
            ) from exc

    def _attach(self) -> None:
        if self._sock is not None:
            return
        sock = self._open()
        ctx = self._ctx
        if ctx is None:
            sock.close()
            raise SourceUnavailable(f"{self!r}: not registered on a module")
        try:
            ctx._add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        log.info("%r: listening (rcvbuf %d bytes)", self, self._actual_rcvbuf())

    def _detach(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._before_close(sock)
        ctx = self._ctx
        if ctx is not None:
            # The loop may already have forgotten the fd.
            with contextlib.suppress(KeyError, ValueError, OSError):
                ctx._remove_reader(sock.fileno())
        sock.close()

    def _before_close(self, sock: socket.socket) -> None:
        """Tell the kernel we leave, if the family needs it."""

    # -- reading ------------------------------------------------------------------

    def _on_readable(self) -> None:
        """Read what is queued (bounded), decode it, emit it as one batch."""
        sock = self._sock
        if sock is None:
            return
        out: list[Any] = []
        for _ in range(MAX_BURST):
            try:
                n, addr = sock.recvfrom_into(self._buf, 0, socket.MSG_TRUNC)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._overrun()
                    continue
                log.warning("%r: receive failed: %s", self, exc)
                break

            if addr[0] != 0:
                # Not from the kernel: udev or another privileged process.
                self._foreign += 1
                continue
            if n > len(self._buf):
                self._truncated(n)
                continue
            try:
                self._decode(self._view[:n], out)
            except Exception:  # one bad datagram must not stop the source
                self._malformed += 1
                self._add_lost(1)
                log.warning("%r: undecodable datagram dropped", self, exc_info=True)

        if out:
            self._emit_many(out)

    def _overrun(self) -> None:
        self._overruns += 1
        self._add_lost(1)
        self._on_overrun()

        # A storm overruns on nearly every wakeup: one warning a second.
        now = time.monotonic()
        if now - self._warned_at < _WARN_EVERY:
            return
        module = self._module
        log.warning(
            "%r of module %r: receive buffer overrun (ENOBUFS), events lost "
            "(%d overruns in all); raise rcvbuf (now %d bytes)",
            self,
            module.name if module is not None else None,
            self._overruns,
            self._actual_rcvbuf(),
        )
        self._warned_at = now

    def _truncated(self, n: int) -> None:
        self._add_lost(1)
        self._malformed += 1
        log.warning(
            "%r: a %d-byte datagram did not fit the %d-byte buffer and was lost; "
            "buffer grown",
            self,
            n,
            len(self._buf),
        )
        self._buf = bytearray(max(n, 2 * len(self._buf)))
        self._view = memoryview(self._buf)

    # -- introspection --------------------------------------------------------------

    def _actual_rcvbuf(self) -> int:
        sock = self._sock
        if sock is None:
            return 0
        try:
            return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            return 0

    @property
    def overruns(self) -> int:
        """How many times the kernel reported a receive buffer overrun."""
        return self._overruns

    def _dump(self) -> dict[str, Any]:
        return {
            "overruns": self._overruns,
            "rcvbuf": self._actual_rcvbuf() or self._rcvbuf,
            "foreign": self._foreign,
            "malformed": self._malformed,
        }
