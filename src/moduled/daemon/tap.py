"""The tap: streams published messages to ``modulectl tail`` clients.

The runtime delivers a source's events to the module that registered it
and to no one else, so the daemon cannot see the kernel events a plugin
receives.  What it can see is what plugins *publish*: the convention is
that a plugin publishes every finding it reports (the stock plugins do, on
topics such as ``exec``, ``fim/changed``, ``net/link``, ``crash/oom``,
``alert/write-exec``), and ``tail PATTERN`` streams every published
message whose topic matches ``PATTERN`` (``re.fullmatch``; default
``.*``), the system topics (``MODULED_MOD_STOPPED`` ...) included.

The tap is a module of the daemon.  It subscribes to ``.*`` only while at
least one client tails, so an untailed daemon pays nothing for it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..flags import ModFlag, SrcType
from ..module import Module
from .protocol import event_line

if TYPE_CHECKING:
    from ..events import Event
    from .control import Client

__all__ = ["Tap"]

_ALL = ".*"


def message_json(message: Any) -> Any:
    """A JSON-friendly view of a message: modules by name, records as dicts."""
    if isinstance(message, Module):
        return message.name
    if isinstance(message, (str, int, float, bool)) or message is None:
        return message
    asdict = getattr(message, "_asdict", None)
    if callable(asdict):
        return {k: message_json(v) for k, v in asdict().items()}
    if isinstance(message, dict):
        return {str(k): message_json(v) for k, v in message.items()}
    if isinstance(message, (list, tuple)):
        return [message_json(v) for v in message]
    return repr(message)


class Tap(Module):
    """Forward published messages to the clients that tail them."""

    name = "moduled.tap"
    flags = ModFlag.PERSIST

    def __init__(self) -> None:
        super().__init__()
        self._streams: dict[Client, re.Pattern[str]] = {}
        self._forwarded = 0

    def add(self, client: Client, pattern: str) -> None:
        """Stream messages whose topic matches ``pattern`` to ``client``.

        Raises:
            re.error: ``pattern`` is not a regular expression.
        """
        regex = re.compile(pattern)
        if not self._streams:
            self.subscribe(_ALL)
        self._streams[client] = regex

    def remove(self, client: Client) -> None:
        """Stop streaming to ``client`` (it went away)."""
        if self._streams.pop(client, None) is not None and not self._streams:
            try:
                self.unsubscribe(_ALL)
            except Exception:
                self.log.debug("tap: no subscription to drop")

    @property
    def streams(self) -> int:
        return len(self._streams)

    def on_evt(self, events: list[Event]) -> None:
        streams = self._streams
        if not streams:
            return
        for ev in events:
            if ev.type is not SrcType.PS:
                continue
            msg = ev.data
            topic = msg.topic
            if topic is None:
                continue
            body: dict[str, Any] | None = None
            for client, regex in list(streams.items()):
                if not regex.fullmatch(topic):
                    continue
                if body is None:
                    sender = msg.sender
                    body = {
                        "topic": topic,
                        "sender": sender.name if sender is not None else None,
                        "message": message_json(msg.message),
                        "ts": ev.ts,
                    }
                if client.lost and client.has_room:
                    # Tell the reader what it missed before it sees more.
                    lost, client.lost = client.lost, 0
                    client.send_event(event_line(client.stream_id, {"lost": lost}))
                if client.send_event(event_line(client.stream_id, body)):
                    self._forwarded += 1

    def on_stop(self) -> None:
        self._streams.clear()
