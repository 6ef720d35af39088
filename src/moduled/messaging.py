"""Messages between modules: tell, publish, broadcast, poison pills and
submodule forwards, and the subscriptions that route publishes.

Every send creates one :class:`PsMessage` and hands the same object to all
its recipients (treat it as immutable).  A send checks the recipients'
mailbox limits first, so it reaches all of them or raises ``RateLimited``
and reaches none.  ``tell`` is the runtime's hot path and is written for it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument, NotFound, PermissionDenied
from .events import Event, PsMessage
from .flags import PRIO_MASK, ModFlag, ModState, SrcFlag, SrcType
from .pubsub import SYSTEM_PREFIX, Subscription
from .threads import forward, loop_thread_only

if TYPE_CHECKING:
    from .context import Context
    from .delivery import TokenBucket
    from .module import Module

__all__ = ["Messenger"]

log = logging.getLogger("moduled.core")

_monotonic_ns = time.monotonic_ns
_get_ident = threading.get_ident
_new_tuple = tuple.__new__
_RUNNING = ModState.RUNNING
_PAUSED = ModState.PAUSED
_NORM = SrcFlag.PRIO_NORM
_PS = SrcType.PS
_DENY_PUB = int(ModFlag.DENY_PUB)


class Messenger:
    """The messaging half of :class:`moduled.Module`.

    Only ever a ``Module``: the ``type: ignore[arg-type]`` marks below are
    where ``self`` is passed on as one.
    """

    name: str
    _fl: int
    _ctx: Context | None
    _state: ModState
    _tb: TokenBucket | None
    _subs: dict[str, Subscription]
    _children: list[Module]
    _sent: int
    _last_ns: int

    if TYPE_CHECKING:

        def _take(self, call: str) -> Context: ...
        def _check_room(self, target: Module, call: str) -> None: ...

    @loop_thread_only
    def subscribe(
        self,
        pattern: str,
        *,
        flags: SrcFlag = SrcFlag.PRIO_NORM,
        userdata: Any = None,
    ) -> None:
        """Receive messages published on topics matching ``pattern``.

        ``pattern`` matches a topic exactly or as a regular expression
        (``re.fullmatch``).  Subscribing again updates the subscription.

        Raises:
            PermissionDenied: the module has ``ModFlag.DENY_SUB``.
            InvalidArgument: empty pattern or bad regular expression.
        """
        ctx = self._take("subscribe")
        if self._fl & ModFlag.DENY_SUB:
            raise PermissionDenied(
                f"module {self.name!r}: subscribe is denied by ModFlag.DENY_SUB"
            )
        if not isinstance(pattern, str) or not pattern:
            raise InvalidArgument(
                f"module {self.name!r}: subscribe({pattern!r}): pass a non-empty "
                "topic or regular expression"
            )
        if (
            not isinstance(flags, int)
            or isinstance(flags, bool)
            or int(flags) & ~int(PRIO_MASK)
            or bin(flags).count("1") > 1
        ):
            raise InvalidArgument(
                f"module {self.name!r}: subscribe: flags={flags!r}: give one "
                "priority (SrcFlag.PRIO_LOW, PRIO_NORM or PRIO_HIGH)"
            )
        flags = SrcFlag(flags)
        sub = Subscription(self, pattern, flags, userdata)  # type: ignore[arg-type]
        ctx._topics.add(sub)
        self._subs[pattern] = sub

    @loop_thread_only
    def unsubscribe(self, pattern: str) -> None:
        """Stop receiving messages for ``pattern``.

        Raises:
            NotFound: the module is not subscribed to ``pattern``.
        """
        ctx = self._take("unsubscribe")
        if pattern not in self._subs:
            raise NotFound(
                f"module {self.name!r}: unsubscribe({pattern!r}): not subscribed"
            )
        del self._subs[pattern]
        ctx._topics.remove(self, pattern)  # type: ignore[arg-type]

    def _may_send(self, call: str) -> Context:
        ctx = self._take(call)
        if self._fl & _DENY_PUB:
            raise PermissionDenied(
                f"module {self.name!r}: {call} is denied by ModFlag.DENY_PUB"
            )
        return ctx

    def tell(self, recipient: Module | str, message: Any) -> None:
        """Send ``message`` to one module (by object or name).

        From a thread other than the loop's, the tell is queued to the loop
        thread (in order) and a failure is logged there.

        Raises:
            NotFound: no such module in the context.
            StateError: the recipient is neither running nor paused.
            RateLimited: the recipient's mailbox is full.
            PermissionDenied: the module has ``ModFlag.DENY_PUB``.
        """
        # The hot path of the runtime: checks are ordered so that the common
        # case (live sender, running recipient, no limits) costs the least.
        ctx = self._ctx
        if (
            ctx is None
            or self._tb is not None
            or self._fl & _DENY_PUB
            or (ctx._owner is not None and ctx._owner != _get_ident())
        ):
            if ctx is not None and ctx._owner not in (None, _get_ident()):
                done = forward(ctx, Messenger.tell, self, recipient, message)
                done.add_done_callback(self._forwarded_tell_done)
                return
            ctx = self._may_send("tell")
        target: Any = recipient
        if recipient.__class__ is str:
            target = ctx._modules.get(recipient)
        if (
            not isinstance(target, Messenger)
            or target._ctx is not ctx
            or (target._state is not _RUNNING and target._state is not _PAUSED)
        ):
            target = ctx._target(recipient, self, "tell")  # type: ignore[arg-type]
        if target._limit:
            self._check_room(target, "tell")
        self._sent += 1
        msg = _new_tuple(PsMessage, (self, None, message))
        self._last_ns = now = _monotonic_ns()
        ev = Event(_PS, msg, None, now)
        if target._batch_size:
            target._enqueue(ev, _NORM)
            return
        target._pending.append(ev)
        target._flushing = True
        if not target._ready and target._state is _RUNNING:
            target._make_ready()

    def _forwarded_tell_done(self, future: Any) -> None:
        # Nobody waits on a tell made from another thread: say when it failed.
        exc = future.exception()
        if exc is not None:
            log.error("%s: tell from another thread failed: %s", self.name, exc)

    @loop_thread_only
    def publish(self, topic: str, message: Any) -> int:
        """Send ``message`` to every module subscribed to a matching pattern.

        Returns:
            How many modules it was queued for.

        Raises:
            PermissionDenied: a system topic (``MODULED_*``), or DENY_PUB.
            RateLimited: a subscriber's mailbox is full (nobody gets it).
            InvalidArgument: ``topic`` is not a non-empty string.
        """
        ctx = self._may_send("publish")
        if not isinstance(topic, str) or not topic:
            raise InvalidArgument(
                f"module {self.name!r}: publish({topic!r}): pass a non-empty topic"
            )
        if topic.startswith(SYSTEM_PREFIX):
            raise PermissionDenied(
                f"module {self.name!r}: publish({topic!r}): topics starting "
                f"with {SYSTEM_PREFIX!r} are reserved for the context"
            )
        self._sent += 1
        self._last_ns = _monotonic_ns()
        msg = PsMessage(self, topic, message)
        return ctx._publish(topic, msg, self)  # type: ignore[arg-type]

    @loop_thread_only
    def broadcast(self, message: Any) -> int:
        """Send ``message`` to every other running or paused module.

        Returns:
            How many modules it was queued for.

        Raises:
            RateLimited: a recipient's mailbox is full (nobody gets it).
        """
        ctx = self._may_send("broadcast")
        targets = [
            m
            for m in ctx._modules.values()
            if m is not self and (m._state is _RUNNING or m._state is _PAUSED)
        ]
        return self._send_to(targets, message, "broadcast")

    @loop_thread_only
    def poisonpill(self, recipient: Module | str) -> None:
        """Stop ``recipient`` once it has handled the messages queued before.

        Raises:
            NotFound: no such module in the context.
            StateError: the recipient is neither running nor paused.
        """
        ctx = self._may_send("poisonpill")
        target = ctx._target(recipient, self, "poisonpill")  # type: ignore[arg-type]
        if target._pill is None:
            target._pill = len(target._pending)
        target._flushing = True
        target._make_ready()

    @loop_thread_only
    def forward(self, message: Any) -> int:
        """Tell ``message`` to every running or paused submodule.

        Returns:
            How many submodules it was queued for.

        Raises:
            RateLimited: a submodule's mailbox is full (nobody gets it).
            PermissionDenied: the module has ``ModFlag.DENY_PUB``.
        """
        self._may_send("forward")
        targets = [
            c for c in self._children if c._state is _RUNNING or c._state is _PAUSED
        ]
        return self._send_to(targets, message, "forward")

    def _send_to(self, targets: list[Module], message: Any, call: str) -> int:
        """Queue one message for every target, or for none if one is full."""
        for target in targets:
            if target._limit:
                self._check_room(target, call)
        self._last_ns = now = _monotonic_ns()
        ev = Event(_PS, PsMessage(self, None, message), None, now)
        self._sent += 1
        for target in targets:
            target._enqueue(ev, _NORM)
        return len(targets)
