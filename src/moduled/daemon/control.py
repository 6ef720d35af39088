"""The control socket: a Unix stream server inside the daemon's loop.

The server never blocks the loop.  Its listening socket and every client
socket are non-blocking and live in a private epoll set; the context's loop
watches only that epoll fd (an epoll fd is readable while any fd in its set
is ready), so the server can ask for writability (``EPOLLOUT``) of exactly
the clients that have output pending, which the loop's reader-only
interface could not express.

Each client is bounded:

* a request line may hold at most :data:`~.protocol.MAX_LINE` bytes; a
  longer one gets a ``too_large`` reply and the connection is closed;
* a request must be complete within ``request_timeout`` seconds of the
  connection or of the previous reply; a silent or half-open client gets a
  ``timeout`` reply and is closed (a streaming ``tail`` client is exempt);
* replies to a slow reader are buffered, never waited for; a streaming
  client whose buffer passes ``stream_limit`` loses events (counted and
  announced to it) rather than growing the daemon without bound;
* at most ``max_clients`` connections are served at once; more are told
  ``busy`` and closed.

The peer's credentials come from ``SO_PEERCRED`` (pid, uid, gid) and its
supplementary groups from ``SO_PEERGROUPS``; the command dispatcher decides
what they allow.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import stat
import struct
import time
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

from ..errors import SourceUnavailable
from ..flags import SrcType
from ..sources.base import Source
from .protocol import (
    MAX_LINE,
    ProtocolError,
    Request,
    decode_request,
    error_reply,
    ok_reply,
)

__all__ = ["Client", "CommandError", "ControlServer", "bind_control_socket"]

log = logging.getLogger(__name__)

_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_UCRED = struct.Struct("3i")
_READ_CHUNK = 65536
#: Bytes read from one client per loop round, so one chatty client cannot
#: starve the others.
_READ_BUDGET = 4 * _READ_CHUNK
_ACCEPT_BUDGET = 64


class CommandError(Exception):
    """A command failed; ``code`` is a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def bind_control_socket(path: str, group_gid: int | None) -> socket.socket:
    """Create, bind and listen on the control socket at ``path``.

    A stale socket file left by a dead daemon is replaced; a live one (a
    daemon answers on it) is an error, and so is any other kind of file.

    Raises:
        SourceUnavailable: the socket cannot be created; says why.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise SourceUnavailable(
                f"control socket {path}: exists and is not a socket; remove it "
                "or choose another --socket"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: nobody listens
        else:
            raise SourceUnavailable(
                f"control socket {path}: another daemon is listening; stop it "
                "or choose another --socket"
            )
        finally:
            probe.close()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sock = socket.socket(
        socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    )
    try:
        # Bind under a umask that leaves no window with a wider mode.
        old = os.umask(0o117)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o660)
        if group_gid is not None:
            os.chown(path, -1, group_gid)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise SourceUnavailable(
            f"control socket {path}: cannot bind ({exc.strerror}); check the "
            "directory exists and is writable, or choose another --socket"
        ) from None
    return sock


class Client:
    """One connection to the control socket."""

    __slots__ = (
        "_closing",
        "_deadline",
        "_inbuf",
        "_lingering",
        "_server",
        "_want_out",
        "closed",
        "fd",
        "gid",
        "groups",
        "lost",
        "outbuf",
        "pid",
        "sock",
        "stream_id",
        "uid",
    )

    def __init__(self, server: ControlServer, sock: socket.socket) -> None:
        self._server = server
        self.sock = sock
        self.fd = sock.fileno()
        self._inbuf = bytearray()
        self.outbuf = bytearray()
        self._want_out = False
        self._closing = False
        self._lingering = False
        self._deadline: Any = None
        self.closed = False
        self.stream_id: Any = None
        self.lost = 0
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            self.pid, self.uid, self.gid = _UCRED.unpack(raw)
        except OSError:
            self.pid, self.uid, self.gid = 0, -1, -1
        self.groups: frozenset[int] = frozenset()
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4096)
            count = len(raw) // 4
            self.groups = frozenset(struct.unpack(f"{count}I", raw[: count * 4]))
        except OSError:
            pass  # older kernels: the primary gid still counts

    def __repr__(self) -> str:
        return f"Client(fd={self.fd}, pid={self.pid}, uid={self.uid})"

    @property
    def streaming(self) -> bool:
        return self.stream_id is not None

    def send(self, line: bytes) -> None:
        """Queue ``line`` and write what the socket takes now."""
        if self.closed:
            return
        self.outbuf += line
        self._flush()

    @property
    def has_room(self) -> bool:
        """Whether a stream line would be queued rather than dropped."""
        return len(self.outbuf) <= self._server.stream_limit

    def send_event(self, line: bytes) -> bool:
        """Queue one line of a stream; drop it if the reader lags too far."""
        if self.closed:
            return False
        if not self.has_room:
            self.lost += 1
            return False
        self.outbuf += line
        self._flush()
        return True

    def start_stream(self, request_id: Any) -> None:
        """Make this connection a stream: no more request deadline."""
        self.stream_id = request_id
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def close(self) -> None:
        """Close after the pending output is written (or at once if none)."""
        self._closing = True
        if not self.outbuf:
            self._server._drop(self)

    def refuse(self, line: bytes) -> None:
        """Send a last error reply, then hang up without losing it.

        Closing a Unix socket while the peer's data sits unread makes the
        peer's reads fail with ECONNRESET, reply or not.  So the write side
        is shut (the peer reads the reply, then EOF) and what the peer
        still sends is drained until it hangs up or its deadline passes.
        """
        self._inbuf.clear()
        self._lingering = True
        self.send(line)
        if not self.closed and not self.outbuf:
            self._shut()

    def _shut(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self._closing = True

    # -- internals, called by the server ------------------------------------

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self.streaming or self.closed:
            self._deadline = None
            return
        ctx = self._server._ctx
        assert ctx is not None
        due = time.monotonic_ns() + int(self._server.request_timeout * 1e9)
        self._deadline = ctx._call_at(due, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self.closed or self.streaming:
            return
        if self._lingering:
            self._server._drop(self)
            return
        log.info("control: %r: no complete request in time; dropped", self)
        self.outbuf += error_reply(
            None,
            "timeout",
            f"no complete request within {self._server.request_timeout:g} s",
        )
        self._flush()
        self._server._drop(self)

    def _flush(self) -> None:
        while self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except BlockingIOError:
                break
            except OSError:
                self._server._drop(self)
                return
            del self.outbuf[:sent]
        want = bool(self.outbuf)
        if want != self._want_out and not self.closed:
            self._want_out = want
            mask = select.EPOLLIN | (select.EPOLLOUT if want else 0)
            self._server._ep.modify(self.fd, mask)
        if not self.outbuf and self._lingering:
            if not self._closing:
                self._shut()
        elif not self.outbuf and self._closing:
            self._server._drop(self)

    def _read(self) -> None:
        budget = _READ_BUDGET
        while budget > 0 and not self.closed:
            try:
                data = self.sock.recv(_READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                self._server._drop(self)
                return
            if not data:
                self._eof()
                return
            budget -= len(data)
            if self._closing or self._lingering:
                continue  # refused or done: ignore what else it sends
            self._inbuf += data
            self._lines()

    def _eof(self) -> None:
        # A client may shut its write side after its request (half-close):
        # the replies still go out, then the connection closes.  End of
        # input also ends a last line sent without its newline.
        rest = bytes(self._inbuf)
        self._inbuf.clear()
        if rest.strip() and not (self._closing or self._lingering):
            self._server._request(self, rest)
        if self.closed:
            return
        if self.streaming or not self.outbuf:
            self._server._drop(self)
        else:
            self._closing = True

    def _lines(self) -> None:
        while not self._closing and not self._lingering:
            end = self._inbuf.find(b"\n")
            if end < 0:
                if len(self._inbuf) >= MAX_LINE:
                    self._refuse_large()
                return
            if end + 1 > MAX_LINE:
                self._refuse_large()
                return
            line = bytes(self._inbuf[:end])
            del self._inbuf[: end + 1]
            if line.strip():
                self._server._request(self, line)
            if not self.closed:
                self._arm()

    def _refuse_large(self) -> None:
        message = f"request line longer than {MAX_LINE} bytes"
        self.refuse(error_reply(None, "too_large", message))


class ControlServer(Source):
    """Serve the control protocol on a bound socket, inside the loop.

    A source of the daemon's own module; it emits no events, it answers.

    Args:
        sock: a listening socket from :func:`bind_control_socket`; the
            server owns it from now on (closes and unlinks it on detach).
        handler: ``handler(client, request)`` returns the result of a
            request, raises :class:`CommandError`, or starts a stream.
        on_close: ``on_close(client)`` when a connection goes away.
    """

    type: ClassVar[SrcType] = SrcType.FD

    def __init__(
        self,
        sock: socket.socket,
        handler: Callable[[Client, Request], Any],
        on_close: Callable[[Client], None] | None = None,
        *,
        request_timeout: float = 5.0,
        max_clients: int = 512,
        stream_limit: int = 1 << 20,
    ) -> None:
        self._sock = sock
        self._path = sock.getsockname()
        # The socket file's inode, to unlink only our own file at the end
        # (fstat on the socket gives sockfs's inode, not the file's).
        try:
            self._ino: int | None = os.stat(self._path).st_ino
        except OSError:
            self._ino = None
        self._handler = handler
        self._on_close = on_close
        self.request_timeout = request_timeout
        self.max_clients = max_clients
        self.stream_limit = stream_limit
        self._ep: Any = None
        self._clients: dict[int, Client] = {}
        self.requests = 0
        self.refused = 0

    @property
    def key(self) -> Hashable:
        return f"control:{self._path}"

    @property
    def path(self) -> str:
        return self._path

    @property
    def spent(self) -> bool:
        """Whether the server was detached: its socket is closed for good."""
        return self._sock.fileno() < 0

    @property
    def clients(self) -> list[Client]:
        return list(self._clients.values())

    def _attach(self) -> None:
        assert self._ctx is not None
        self._ep = select.epoll(sizehint=64, flags=select.EPOLL_CLOEXEC)
        self._ep.register(self._sock.fileno(), select.EPOLLIN)
        self._ctx._add_reader(self._ep.fileno(), self._on_ready)
        log.info("control: listening on %s", self._path)

    def _detach(self) -> None:
        if self._ep is None:
            return
        for client in list(self._clients.values()):
            self._drop(client)
        if self._ctx is not None:
            try:
                self._ctx._remove_reader(self._ep.fileno())
            except Exception:
                log.debug("control: loop already released the reader")
        self._ep.close()
        self._ep = None
        try:
            if os.stat(self._path).st_ino == self._ino:
                os.unlink(self._path)
        except OSError:
            pass
        self._sock.close()

    def _dump(self) -> dict[str, Any]:
        return {
            "path": self._path,
            "clients": len(self._clients),
            "requests": self.requests,
            "refused": self.refused,
        }

    # -- the loop's callback --------------------------------------------------

    def _on_ready(self) -> None:
        # An exception escaping a source callback would fail the daemon's
        # own module (and with it signals and hot reload): log it instead.
        try:
            self._serve()
        except Exception:
            log.exception("control: internal error; the server goes on")

    def _serve(self) -> None:
        if self._ep is None:
            return
        listen_fd = self._sock.fileno()
        for fd, mask in self._ep.poll(0):
            if fd == listen_fd:
                self._accept()
                continue
            client = self._clients.get(fd)
            if client is None:
                continue
            if mask & select.EPOLLOUT:
                client._flush()
            if not client.closed and mask & (
                select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
            ):
                client._read()

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BUDGET):
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS):
                    log.warning("control: cannot accept: %s", exc.strerror)
                return
            conn.setblocking(False)
            client = Client(self, conn)
            if len(self._clients) >= self.max_clients:
                self.refused += 1
                log.warning("control: %r refused: %d clients", client, self.max_clients)
                with contextlib.suppress(OSError):
                    conn.send(error_reply(None, "busy", "too many clients; retry"))
                conn.close()
                continue
            self._clients[client.fd] = client
            self._ep.register(client.fd, select.EPOLLIN)
            client._arm()

    def _drop(self, client: Client) -> None:
        if client.closed:
            return
        client.closed = True
        if client._deadline is not None:
            client._deadline.cancel()
            client._deadline = None
        self._clients.pop(client.fd, None)
        if self._ep is not None:
            with contextlib.suppress(OSError):
                self._ep.unregister(client.fd)
        client.sock.close()
        if self._on_close is not None:
            try:
                self._on_close(client)
            except Exception:
                log.exception("control: close handler failed for %r", client)

    def _request(self, client: Client, line: bytes) -> None:
        self.requests += 1
        try:
            req = decode_request(line)
        except ProtocolError as exc:
            client.send(error_reply(exc.id, exc.code, str(exc)))
            return
        try:
            result = self._handler(client, req)
        except CommandError as exc:
            client.send(error_reply(req.id, exc.code, str(exc)))
            return
        except Exception as exc:
            log.exception("control: %s failed", req.cmd)
            message = f"{req.cmd}: {type(exc).__name__}: {exc}"
            client.send(error_reply(req.id, "internal", message))
            return
        client.send(ok_reply(req.id, result))
