"""The control protocol spoken on the daemon's Unix socket: JSON lines.

Every request and every reply is one JSON object on one line, terminated by
``\\n``, UTF-8 encoded, at most :data:`MAX_LINE` bytes long.

Request::

    {"v": 1, "id": 7, "cmd": "pause", "args": {"module": "ticker"}}

Reply, success or failure::

    {"v": 1, "id": 7, "ok": true, "result": {...}}
    {"v": 1, "id": 7, "ok": false,
     "error": {"code": "not_found", "message": "ticker: no such module"}}

``id`` is chosen by the client (any JSON scalar) and echoed back, so a
client may pipeline requests on one connection.  A streaming command
(``tail``) answers once with ``ok`` and then sends any number of event
lines, ``{"v": 1, "id": 7, "event": {...}}``, until the client hangs up.

The version ``v`` is the JSON integer 1 (not ``true``, not ``1.0``).  A
request with another version is refused with ``unsupported_version``; a
later protocol keeps accepting version 1.  Numbers must be finite: a
request holding ``NaN``, ``Infinity`` or a number too large for a double
(``1e400``) is refused with ``bad_request``, and replies never carry one
(a non-finite float in a result is sent as ``null``), so every line stays
valid JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "COMMANDS",
    "ERROR_CODES",
    "MAX_LINE",
    "VERSION",
    "ProtocolError",
    "Request",
    "decode_reply",
    "decode_request",
    "encode",
    "error_reply",
    "event_line",
    "ok_reply",
    "request_line",
]

VERSION = 1
#: Longest request or reply line, newline included; longer requests are
#: refused with ``too_large`` and the connection is closed.
MAX_LINE = 64 * 1024

#: Every command the daemon knows, with whether it changes state (root only).
COMMANDS: dict[str, bool] = {
    "ping": False,
    "status": False,
    "list": False,
    "show": False,
    "probes": False,
    "tail": False,
    "pause": True,
    "resume": True,
    "start": True,
    "stop": True,
    "reload": True,
}

#: Error codes a reply may carry.
ERROR_CODES = (
    "bad_request",  # not JSON, not an object, missing or mistyped field
    "unsupported_version",
    "unknown_command",
    "not_found",  # no such module or plugin
    "state",  # the module's state forbids the call
    "permission",  # the peer may not run this command
    "too_large",  # the request line exceeds MAX_LINE
    "timeout",  # the request was not completed in time
    "busy",  # too many clients
    "failed",  # the command ran and failed (e.g. a plugin did not load)
    "internal",  # a bug in the daemon; the message says what
)


class ProtocolError(Exception):
    """A line that is not a valid request or reply.

    ``code`` is one of :data:`ERROR_CODES`; ``id`` is the request's id when
    it could be read, so that the error reply can still be matched.
    """

    def __init__(self, code: str, message: str, id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.id = id


class Request:
    """A decoded request: ``id``, ``cmd`` and ``args`` (a dict)."""

    __slots__ = ("args", "cmd", "id")

    def __init__(self, id: Any, cmd: str, args: dict[str, Any]) -> None:
        self.id = id
        self.cmd = cmd
        self.args = args

    def __repr__(self) -> str:
        return f"Request(id={self.id!r}, cmd={self.cmd!r}, args={self.args!r})"


def _jsonable(obj: Any) -> Any:
    """Fallback for json.dumps: sets, tuples, enums, bytes and the rest."""
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    value = getattr(obj, "value", None)
    if isinstance(value, (str, int, float)):
        return value
    asdict = getattr(obj, "_asdict", None)
    if callable(asdict):
        return asdict()
    return repr(obj)


def _finite(obj: Any) -> Any:
    """``obj`` (plain JSON values) with non-finite floats as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def encode(obj: dict[str, Any]) -> bytes:
    """Serialise one protocol object as a line of bytes (strict JSON)."""
    try:
        text = json.dumps(
            obj, separators=(",", ":"), default=_jsonable, allow_nan=False
        )
    except ValueError:
        # A NaN or an infinity somewhere (a stats ratio, a plugin's message):
        # go through plain values once and send those as null.
        plain = json.loads(json.dumps(obj, default=_jsonable))
        text = json.dumps(_finite(plain), separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", "backslashreplace") + b"\n"


def request_line(id: Any, cmd: str, args: dict[str, Any] | None = None) -> bytes:
    """Build the request line for ``cmd``."""
    return encode({"v": VERSION, "id": id, "cmd": cmd, "args": args or {}})


def ok_reply(id: Any, result: Any) -> bytes:
    """Build a success reply."""
    return encode({"v": VERSION, "id": id, "ok": True, "result": result})


def error_reply(id: Any, code: str, message: str) -> bytes:
    """Build an error reply; ``code`` is one of :data:`ERROR_CODES`."""
    error = {"code": code, "message": message}
    return encode({"v": VERSION, "id": id, "ok": False, "error": error})


def event_line(id: Any, event: dict[str, Any]) -> bytes:
    """Build one line of a streaming reply."""
    return encode({"v": VERSION, "id": id, "event": event})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is too large")
    return value


def _load_object(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_request", f"line is not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", "line is not a JSON object")
    return obj


def decode_request(line: bytes) -> Request:
    """Parse and validate one request line (without or with its newline).

    Raises:
        ProtocolError: the line is not a valid version-1 request.
    """
    obj = _load_object(line)
    rid = obj.get("id")
    if rid is not None and not isinstance(rid, (str, int, float, bool)):
        raise ProtocolError("bad_request", "'id' must be a JSON scalar")
    if "v" not in obj:
        raise ProtocolError("bad_request", "missing 'v': send \"v\": 1", rid)
    if type(obj["v"]) is not int or obj["v"] != VERSION:
        raise ProtocolError(
            "unsupported_version",
            f'protocol version {obj["v"]!r} is not supported: send "v": 1',
            rid,
        )
    cmd = obj.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("bad_request", "missing 'cmd' string", rid)
    if cmd not in COMMANDS:
        known = ", ".join(COMMANDS)
        raise ProtocolError(
            "unknown_command", f"{cmd[:40]!r}: unknown command; one of {known}", rid
        )
    args = obj.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError("bad_request", "'args' must be a JSON object", rid)
    return Request(rid, cmd, args)


def decode_reply(line: bytes) -> dict[str, Any]:
    """Parse one reply or event line, checking its shape.

    Raises:
        ProtocolError: the line is not a valid version-1 reply.
    """
    obj = _load_object(line)
    if obj.get("v") != VERSION:
        raise ProtocolError("unsupported_version", f"reply version {obj.get('v')!r}")
    if "event" in obj:
        return obj
    if not isinstance(obj.get("ok"), bool):
        raise ProtocolError("bad_request", "reply without an 'ok' boolean")
    if obj["ok"] and "result" not in obj:
        raise ProtocolError("bad_request", "successful reply without 'result'")
    if not obj["ok"] and not isinstance(obj.get("error"), dict):
        raise ProtocolError("bad_request", "failed reply without an 'error' object")
    return obj
