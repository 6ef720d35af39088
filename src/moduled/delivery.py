"""The delivery policy: how events wait in a module's mailbox.

Every event reaching a module is appended to its pending list together with
a decision about *when* the list must be handed over:

* PRIO_HIGH events (fds, anything registered with PRIO_HIGH) flush at once;
* PRIO_NORM events flush at once when batching is off, otherwise when
  ``size`` of them are pending or ``timeout_ns`` after the first one;
* PRIO_LOW events wait until something else flushes the list.

A flushed module goes on its context's ready list and its handler gets
everything pending, oldest first, in one call (at most ``MAX_BATCH``
events).  A PAUSED module keeps accumulating; ``resume`` flushes.  Stashed
events come back at the head of the list, and a poison pill marks the
position after which the module stops.

Nothing here drops an event: a mailbox limit refuses the *send*
(``RateLimited`` in the sender), and a stop counts what it discards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument, RateLimited
from .events import Event
from .flags import ModFlag, ModState, SrcFlag
from .threads import loop_thread_only

if TYPE_CHECKING:
    from .context import Context
    from .module import Module

__all__ = ["MAX_BATCH", "Mailbox", "TokenBucket"]

#: The largest batch handed to one ``on_evt`` call; the rest follows in the
#: next call, so that one flooded module cannot starve the others.
MAX_BATCH = 8192

_monotonic_ns = time.monotonic_ns
_RUNNING = ModState.RUNNING
_PAUSED = ModState.PAUSED
_HIGH = SrcFlag.PRIO_HIGH
_NORM = SrcFlag.PRIO_NORM
_THREADED = int(ModFlag.THREADED)

Handler = Callable[[list[Event]], Any]


class TokenBucket:
    """A token bucket refilled at ``rate`` tokens a second, up to ``burst``."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: int, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = _monotonic_ns()

    def take(self) -> bool:
        now = _monotonic_ns()
        tokens = self.tokens + (now - self.stamp) * self.rate / 1e9
        self.stamp = now
        tokens = min(tokens, self.burst)
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class Mailbox:
    """The pending events of a module and the policy that releases them.

    The base of :class:`moduled.Module`; its methods run on the loop thread.
    """

    name: str
    _fl: int
    _ctx: Context | None
    _state: ModState
    _recv: int
    _last_ns: int

    if TYPE_CHECKING:

        def _live(self, call: str) -> Context: ...
        def _take(self, call: str) -> Context: ...
        def _fail(self, exc: BaseException, hook: str) -> None: ...
        def _stop(self, *, hook: bool = True) -> None: ...
        def on_evt(self, events: list[Event]) -> Any: ...

    def _init_mailbox(self) -> None:
        self._pending: list[Event] = []
        self._flushing = False
        self._ready = False
        self._norm = 0
        self._pill: int | None = None
        self._front = 0  # unstashed events at the head of _pending
        self._batch_size = 0
        self._batch_timeout = 0
        self._batch_timer: Any = None
        self._stash: list[Event] = []
        self._handlers: list[Handler] = []
        self._tb: TokenBucket | None = None
        self._limit = 0
        self._refused = 0
        self._discarded = 0
        self._worker_busy = False  # a THREADED module's batch is running

    def _clear_mailbox(self) -> None:
        """Drop what a stop resets: queues, stash, handlers and limits."""
        self._discarded += len(self._pending)
        self._pending = []
        self._flushing = False
        self._norm = 0
        self._pill = None
        self._front = 0
        self._stash.clear()
        self._handlers.clear()
        self._batch_size = 0
        self._batch_timeout = 0
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        self._tb = None

    def _check_room(self, target: Module, call: str) -> None:
        """Refuse a send to ``target`` when its mailbox is full."""
        if target._limit and len(target._pending) >= target._limit:
            target._refused += 1
            raise RateLimited(
                f"module {self.name!r}: {call}: mailbox of {target.name!r} is full "
                f"({target._limit} pending); retry later or raise its mailbox_set"
            )

    @loop_thread_only
    def stash(self, event: Event) -> None:
        """Keep ``event`` aside until ``unstash``.

        Raises:
            InvalidArgument: ``event`` is not an Event.
        """
        self._live("stash")
        if not isinstance(event, Event):
            raise InvalidArgument(
                f"module {self.name!r}: stash({event!r}): pass an md.Event"
            )
        self._stash.append(event)

    @loop_thread_only
    def unstash(self, count: int | None = None) -> int:
        """Re-deliver ``count`` stashed events (all when None), oldest first.

        They are delivered ahead of anything queued after them.

        Returns:
            How many events were unstashed.

        Raises:
            InvalidArgument: ``count`` is negative or not an int.
        """
        self._live("unstash")
        if count is None:
            count = len(self._stash)
        elif not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise InvalidArgument(
                f"module {self.name!r}: unstash({count!r}): pass None or a count >= 0"
            )
        events = self._stash[:count]
        if not events:
            return 0
        del self._stash[: len(events)]
        self._push_front(events)
        return len(events)

    def _push_front(self, events: list[Event]) -> None:
        """Queue ``events`` ahead of everything queued normally, after the
        events pushed there before, and flush (unstash, replay)."""
        front = self._front
        self._pending[front:front] = events
        self._front = front + len(events)
        if self._pill is not None:
            self._pill += len(events)
        self._flushing = True
        self._make_ready()

    # -- delivery policy --------------------------------------------------------

    @loop_thread_only
    def batch_set(self, size: int, timeout_ns: int) -> None:
        """Deliver NORM events when ``size`` are pending or ``timeout_ns`` after
        the first pending one; ``size`` 0 turns batching off.

        Raises:
            InvalidArgument: negative values, or a size without a timeout.
        """
        self._take("batch_set")
        for label, value in (("size", size), ("timeout_ns", timeout_ns)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(
                    f"module {self.name!r}: batch_set: {label} {value!r} "
                    "must be an int >= 0"
                )
        if size and not timeout_ns:
            raise InvalidArgument(
                f"module {self.name!r}: batch_set({size}, 0): give a timeout so "
                "a partial batch is delivered too"
            )
        self._batch_size = size
        self._batch_timeout = timeout_ns if size else 0
        if not size and self._norm:
            self._flushing = True
            self._make_ready()

    @loop_thread_only
    def tb_set(self, rate: int, burst: int) -> None:
        """Limit the module's own API calls to ``rate`` per second with bursts
        of ``burst``; ``rate`` 0 turns the limit off.

        Raises:
            InvalidArgument: negative values, or a burst below 1 with a rate.
        """
        self._live("tb_set")
        for label, value in (("rate", rate), ("burst", burst)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(
                    f"module {self.name!r}: tb_set: {label} {value!r} "
                    "must be an int >= 0"
                )
        if rate and burst < 1:
            raise InvalidArgument(
                f"module {self.name!r}: tb_set({rate}, {burst}): burst must be >= 1"
            )
        self._tb = TokenBucket(rate, burst) if rate else None

    @loop_thread_only
    def mailbox_set(self, limit: int) -> None:
        """Bound the module's queue: a message sent over ``limit`` pending
        events raises ``RateLimited`` in the sender; 0 means unbounded.

        Raises:
            InvalidArgument: ``limit`` is negative or not an int.
        """
        self._live("mailbox_set")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise InvalidArgument(
                f"module {self.name!r}: mailbox_set({limit!r}): pass an int >= 0"
            )
        self._limit = limit

    def _make_ready(self) -> None:
        if not self._ready and self._state is _RUNNING:
            self._ready = True
            ctx = self._ctx
            assert ctx is not None
            ctx._ready.append(self)  # type: ignore[arg-type] # always a Module
            if not ctx._busy:
                ctx._wake()

    def _enqueue(self, ev: Event, prio: SrcFlag) -> None:
        """Queue one event under the delivery policy (loop thread only)."""
        self._pending.append(ev)
        if prio is _HIGH or (prio is _NORM and not self._batch_size):
            self._flushing = True
        elif prio is _NORM:
            self._norm += 1
            if self._norm >= self._batch_size:
                self._flushing = True
            elif self._batch_timer is None:
                ctx = self._ctx
                assert ctx is not None
                self._batch_timer = ctx._call_at(
                    ev.ts + self._batch_timeout, self._batch_expired
                )
                return
            else:
                return
        else:
            return
        if not self._ready and self._state is _RUNNING:
            self._make_ready()

    def _enqueue_many(self, events: list[Event], prio: SrcFlag) -> None:
        """Queue events from one source, in order (loop thread only)."""
        if prio is _NORM and self._batch_size:
            for ev in events:
                self._enqueue(ev, prio)
            return
        self._pending.extend(events)
        if prio is not SrcFlag.PRIO_LOW:
            self._flushing = True
            if not self._ready and self._state is _RUNNING:
                self._make_ready()

    def _batch_expired(self) -> None:
        self._batch_timer = None
        if self._pending:
            self._flushing = True
            self._make_ready()

    def _deliver(self) -> None:
        """Hand the pending events to the current handler (loop thread only)."""
        self._ready = False
        if self._state is not _RUNNING or not self._flushing or self._worker_busy:
            return  # a THREADED module's worker readies it again when done
        pending = self._pending
        pill = self._pill
        if pill is not None and pill <= MAX_BATCH:
            batch = pending[:pill]
            self._pending = pending[pill:]
            self._pill = None
        elif len(pending) > MAX_BATCH:
            batch = pending[:MAX_BATCH]
            self._pending = pending[MAX_BATCH:]
            if pill is not None:
                self._pill = pill - MAX_BATCH
        else:
            batch = pending
            self._pending = []
        self._front = max(0, self._front - len(batch))
        if not self._pending:
            self._flushing = False
            self._norm = 0
            if self._batch_timer is not None:
                self._batch_timer.cancel()
                self._batch_timer = None
        else:
            self._norm = max(0, self._norm - len(batch))
            self._make_ready()

        if batch:
            ctx = self._ctx
            assert ctx is not None
            self._recv += len(batch)
            ctx._recv += len(batch)
            self._last_ns = _monotonic_ns()
            if ctx._observers:
                for observe in ctx._observers:
                    observe(self, batch)  # type: ignore[arg-type] # a Module
            handler = self._handlers[-1] if self._handlers else self.on_evt
            pill_hit = pill is not None and self._pill is None
            if self._fl & _THREADED:
                self._run_threaded(ctx, handler, batch, pill_hit)
                return
            try:
                handler(batch)
            except ctx._hook_errors as exc:
                self._fail(exc, "on_evt")
                return
        if (
            pill is not None
            and self._pill is None
            and (self._state is _RUNNING or self._state is _PAUSED)
        ):
            self._stop()

    def _run_threaded(
        self, ctx: Context, handler: Handler, batch: list[Event], pill_hit: bool
    ) -> None:
        """Run ``handler(batch)`` on a worker thread (ModFlag.THREADED).

        One batch at a time per module: the module is not delivered to again
        until the worker is done.  Calls the handler makes on the module or
        its context are carried out on the loop thread (see ``threads``).
        """
        self._worker_busy = True
        errors = ctx._hook_errors

        def work() -> None:
            failure: BaseException | None = None
            try:
                handler(batch)
            except errors as exc:
                failure = exc
            ctx._call_threadsafe(lambda: self._threaded_done(failure, pill_hit))

        ctx._worker_pool().submit(work)

    def _threaded_done(self, failure: BaseException | None, pill_hit: bool) -> None:
        self._worker_busy = False
        live = self._state is _RUNNING or self._state is _PAUSED
        if failure is not None:
            if self._ctx is not None:
                self._fail(failure, "on_evt")
            return
        if pill_hit and live:
            self._stop()
        elif self._pending and self._flushing:
            self._make_ready()
