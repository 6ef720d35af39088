"""A blocking client of the daemon's control socket, for ``modulectl``."""

from __future__ import annotations

import errno
import itertools
import socket
from collections.abc import Iterator
from typing import Any

from ..daemon.protocol import (
    MAX_LINE,
    ProtocolError,
    decode_reply,
    request_line,
)

__all__ = ["ConnectError", "ControlClient", "ReplyError"]


class ConnectError(Exception):
    """The daemon cannot be reached; ``denied`` when the socket refused us."""

    def __init__(self, message: str, *, denied: bool = False) -> None:
        super().__init__(message)
        self.denied = denied


class ReplyError(Exception):
    """The daemon answered with an error: ``code`` and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlClient:
    """One connection to the control socket at ``path``.

    Raises:
        ConnectError: no socket, nobody listening, or permission denied.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self._ids = itertools.count(1)
        self._buf = bytearray()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            denied = exc.errno in (errno.EACCES, errno.EPERM)
            hint = {
                errno.ENOENT: "no such socket; is moduled running? (--socket)",
                errno.ECONNREFUSED: "nobody listens; is moduled running?",
                errno.EACCES: "permission denied; run as root or join its group",
            }.get(exc.errno or 0, exc.strerror or str(exc))
            raise ConnectError(f"{path}: {hint}", denied=denied) from None

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > 64 * MAX_LINE:
                raise ProtocolError("bad_request", "reply line too long")
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                raise ConnectError(f"{self.path}: no reply in time") from None
            except OSError as exc:
                raise ConnectError(f"{self.path}: {exc.strerror}") from None
            if not data:
                raise ProtocolError("bad_request", "the daemon closed the connection")
            self._buf += data

    def request(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result.

        Raises:
            ReplyError: the daemon refused or failed the request.
            ProtocolError: the reply is not valid.
            ConnectError: the connection broke or timed out.
        """
        rid = next(self._ids)
        try:
            self._sock.sendall(request_line(rid, cmd, args))
        except OSError as exc:
            raise ConnectError(f"{self.path}: {exc.strerror}") from None
        while True:
            reply = decode_reply(self._line())
            if "event" in reply:
                continue
            if reply.get("id") not in (rid, None):
                continue
            if reply["ok"]:
                return reply["result"]
            error = reply["error"]
            raise ReplyError(str(error.get("code")), str(error.get("message")))

    def events(self) -> Iterator[dict[str, Any]]:
        """Yield the event lines of a stream (after ``request("tail")``)."""
        self._sock.settimeout(None)
        while True:
            reply = decode_reply(self._line())
            if "event" in reply:
                yield reply["event"]
            elif not reply.get("ok", True):
                error = reply["error"]
                raise ReplyError(str(error.get("code")), str(error.get("message")))
