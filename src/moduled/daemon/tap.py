"""The tap: streams messages and kernel events to ``modulectl tail`` clients.

``tail PATTERN`` streams two kinds of lines, each with a topic that
``PATTERN`` must match (``re.fullmatch``; default ``.*``):

* every published message, on its own topic (the stock plugins publish
  their findings on ``exec``, ``fim/changed``, ``net/link``, ``crash/oom``,
  ``alert/write-exec``), the system topics (``MODULED_MOD_STOPPED`` ...)
  included; ``sender`` is the publishing module;
* every kernel event delivered to a module, on the topic
  ``kernel/<module>/<type>`` where type is ``proc``, ``uevent``, ``rtnl``,
  ``path``, ``signal`` or ``pid``, and ``kernel/<module>/probe/<probe>``
  for eBPF records (``kernel/exec_logger/probe/tracepoint:sched:...``);
  ``sender`` is the module that received it and ``message`` the event's
  record.

Messages reach the tap through a subscription to ``.*``.  Kernel events go
to the module that registered the source and to no one else, so the tap
sees them through the context's delivery observer hook, which runs on the
loop thread just before each delivery.  Both the subscription and the
observer exist only while at least one client tails: an untailed daemon
pays nothing for the tap.

Each line carries ``kind`` (``message`` or ``kernel``), ``topic``,
``sender``, ``message`` and ``ts``.  A client that reads too slowly loses
lines (its buffer is bounded by the control server) and is told how many
in a ``{"lost": N}`` line before the next one it gets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..flags import ModState, SrcType
from ..module import Module
from .guard import OwnModule
from .protocol import event_line

if TYPE_CHECKING:
    from ..events import Event
    from .control import Client

__all__ = ["TAPPED_TYPES", "Tap", "message_json"]

log = logging.getLogger(__name__)

_ALL = ".*"

#: The event types streamed as ``kernel/...`` lines: what the kernel reports.
TAPPED_TYPES = frozenset(
    {
        SrcType.PROBE,
        SrcType.PROC,
        SrcType.UEVENT,
        SrcType.RTNL,
        SrcType.PATH,
        SrcType.SIGNAL,
        SrcType.PID,
    }
)


def message_json(message: Any) -> Any:
    """A JSON-friendly view of a message: modules by name, records as dicts."""
    if isinstance(message, Module):
        return message.name
    if isinstance(message, (str, int, float, bool)) or message is None:
        return message
    if isinstance(message, bytes):
        return message.decode("utf-8", "backslashreplace")
    asdict = getattr(message, "_asdict", None)
    if callable(asdict):
        return {k: message_json(v) for k, v in asdict().items()}
    if isinstance(message, Mapping):
        return {str(k): message_json(v) for k, v in dict(message).items()}
    if isinstance(message, (list, tuple, set, frozenset)):
        return [message_json(v) for v in message]
    return repr(message)


def kernel_topic(module: Module, ev: Event) -> str:
    """The tail topic of a kernel event delivered to ``module``."""
    if ev.type is SrcType.PROBE:
        return f"kernel/{module.name}/probe/{getattr(ev.data, 'probe', '?')}"
    return f"kernel/{module.name}/{ev.type.value}"


class Tap(OwnModule):
    """Forward messages and kernel events to the clients that tail them.

    Args:
        stopping: tells whether the daemon is shutting down.
    """

    name = "moduled.tap"

    def __init__(self, stopping: Callable[[], bool]) -> None:
        super().__init__(stopping)
        self._streams: dict[Client, re.Pattern[str]] = {}
        self._observing = False
        self._subscribed = False
        self.forwarded = 0
        self.observe_errors = 0

    def add(self, client: Client, pattern: str) -> None:
        """Stream lines whose topic matches ``pattern`` to ``client``.

        Raises:
            re.error: ``pattern`` is not a regular expression.
        """
        regex = re.compile(pattern)
        self._streams[client] = regex
        self._tap_on()

    def remove(self, client: Client) -> None:
        """Stop streaming to ``client`` (it went away)."""
        if self._streams.pop(client, None) is not None and not self._streams:
            self._tap_off()

    @property
    def streams(self) -> int:
        return len(self._streams)

    @property
    def observing(self) -> bool:
        """Whether the delivery observer is installed (someone tails)."""
        return self._observing

    def _tap_on(self) -> None:
        if self._ctx is None:
            return
        if not self._observing:
            self._ctx._add_observer(self._observe)
            self._observing = True
        if self._state is ModState.RUNNING and not self._subscribed:
            self.subscribe(_ALL)
            self._subscribed = True

    def _tap_off(self) -> None:
        if self._observing and self._ctx is not None:
            self._ctx._remove_observer(self._observe)
        self._observing = False
        if self._subscribed:
            self._subscribed = False
            try:
                self.unsubscribe(_ALL)
            except Exception:
                log.debug("tap: no subscription to drop")

    # -- delivery --------------------------------------------------------------

    def _matching(self, topic: str) -> list[Client]:
        return [c for c, regex in self._streams.items() if regex.fullmatch(topic)]

    def _send(self, clients: list[Client], body: dict[str, Any]) -> None:
        for client in clients:
            if client.lost and client.has_room:
                # Tell the reader what it missed before it sees more.
                lost, client.lost = client.lost, 0
                client.send_event(event_line(client.stream_id, {"lost": lost}))
            if client.send_event(event_line(client.stream_id, body)):
                self.forwarded += 1

    def _observe(self, module: Module, batch: list[Event]) -> None:
        # Called by the loop before each delivery: must not raise, must not
        # keep the batch.
        if module is self or not self._streams:
            return
        try:
            for ev in batch:
                if ev.type not in TAPPED_TYPES:
                    continue
                topic = kernel_topic(module, ev)
                clients = self._matching(topic)
                if not clients:
                    continue
                body = {
                    "kind": "kernel",
                    "topic": topic,
                    "sender": module.name,
                    "type": ev.type.value,
                    "message": message_json(ev.data),
                    "ts": ev.ts,
                }
                self._send(clients, body)
        except Exception:
            self.observe_errors += 1
            if self.observe_errors == 1:
                log.exception("tap: cannot stream an event of %s", module.name)

    def on_start(self) -> None:
        if self._streams:
            self._tap_on()  # started again after an unexpected stop

    def on_evt(self, events: list[Event]) -> None:
        if not self._streams:
            return
        for ev in events:
            if ev.type is not SrcType.PS:
                continue
            msg = ev.data
            topic = msg.topic
            if topic is None:
                continue
            clients = self._matching(topic)
            if not clients:
                continue
            body = {
                "kind": "message",
                "topic": topic,
                "sender": msg.sender.name if msg.sender is not None else None,
                "message": message_json(msg.message),
                "ts": ev.ts,
            }
            self._send(clients, body)

    def on_stop(self) -> None:
        super().on_stop()
        self._subscribed = False  # a stop drops every subscription
        if self._daemon_stopping():
            self._tap_off()
            self._streams.clear()
