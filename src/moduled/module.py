"""Modules: the actors of a context.

A module owns its sources and subscriptions, receives events in batches
through ``on_evt`` and talks to other modules with messages.  All of its
methods are meant for the thread that loops its context.

How events wait in a module's mailbox (priorities, batches, stash, poison
pills) is the delivery policy, in ``delivery.py``.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .delivery import MAX_BATCH, Mailbox
from .errors import (
    AlreadyRegistered,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    StateError,
)
from .events import Event
from .flags import ModFlag, ModState, SrcFlag, SrcType
from .messaging import Messenger
from .pubsub import MOD_STARTED, MOD_STOPPED, SYSTEM_PREFIX, Subscription
from .sources.base import Source
from .threads import loop_thread_only

if TYPE_CHECKING:
    from .context import Context

__all__ = ["MAX_BATCH", "ModStats", "Module"]

log = logging.getLogger("moduled.core")

_monotonic_ns = time.monotonic_ns
_RUNNING = ModState.RUNNING
_PAUSED = ModState.PAUSED
_IDLE = ModState.IDLE
_STOPPED = ModState.STOPPED
_ZOMBIE = ModState.ZOMBIE
_NO_FLAGS = SrcFlag(0)
_ALL_MOD_FLAGS = sum(int(f) for f in ModFlag)

Handler = Callable[[list[Event]], Any]


class ModStats(NamedTuple):
    """A module's counters.

    ``activity_freq`` is the number of actions (messages sent plus events
    received) per millisecond since the module was registered;
    ``inactive_ms`` is the time since its last action.  ``lost_events``
    counts what its sources could not deliver (kernel queue overflows, full
    ring buffers), ``refused_msgs`` the sends refused by its mailbox limit
    and ``discarded_events`` what was pending when it stopped.
    """

    inactive_ms: int
    activity_freq: float
    sent_msgs: int
    recv_msgs: int
    lost_events: int
    refused_msgs: int
    discarded_events: int
    pending: int


class Module(Mailbox, Messenger):
    """An actor: override ``on_evt`` and, as needed, the other hooks.

    Args:
        name: unique within its context; a subclass may set ``name`` as a
            class attribute instead.
        flags: ``ModFlag`` values; a subclass may set ``flags`` instead.
        userdata: anything; kept as ``self.userdata``.

    Raises:
        InvalidArgument: no name, or a name that is not a non-empty string.
    """

    #: The module's name; a subclass may set it as a class attribute.
    name: str = None  # type: ignore[assignment]
    #: The module's flags, fixed at construction.
    flags: ModFlag = ModFlag(0)

    def __init__(
        self,
        name: str | None = None,
        *,
        flags: ModFlag | None = None,
        userdata: Any = None,
    ) -> None:
        if name is None:
            name = type(self).name
        if not isinstance(name, str) or not name or name.startswith(SYSTEM_PREFIX):
            raise InvalidArgument(
                f"{type(self).__name__}: module name {name!r}: give a non-empty "
                f"string not starting with {SYSTEM_PREFIX!r}, as Module(name=...) "
                "or a class attribute"
            )
        if flags is None:
            flags = type(self).flags
        if (
            not isinstance(flags, int)
            or isinstance(flags, bool)
            or int(flags) & ~_ALL_MOD_FLAGS
            or flags < 0
        ):
            raise InvalidArgument(
                f"module {name!r}: flags={flags!r}: combine md.ModFlag values only"
            )
        self.name = name
        self.flags = ModFlag(flags)
        self._fl = int(flags)  # the flags as a plain int, for the hot paths
        self.userdata = userdata
        self.failure: BaseException | None = None
        self._failure_tb: str | None = None
        self._ctx: Context | None = None
        self._state = _IDLE
        self._log: logging.Logger | None = None

        self._init_mailbox()

        self._sources: dict[tuple[SrcType, Any], Source] = {}
        self._subs: dict[str, Subscription] = {}
        self._followers: list[Module] = []
        self._leader: Module | None = None
        self._parent: Module | None = None
        self._children: list[Module] = []

        self._registered_ns = 0
        self._last_ns = 0
        self._sent = 0
        self._recv = 0
        self._lost = 0

    # -- hooks ----------------------------------------------------------------

    def on_eval(self) -> bool:
        """Tell whether the module may start now; called while it is IDLE."""
        return True

    def on_start(self) -> bool | None:
        """Set the module up; return False to stop it at once."""
        return None

    def on_evt(self, events: list[Event]) -> Any:
        """Handle a batch of events, oldest first.  Every module overrides it."""
        raise InvalidArgument(
            f"module {self.name!r}: {type(self).__name__} does not override on_evt"
        )

    def on_stop(self) -> None:
        """Release what ``on_start`` set up beyond sources and subscriptions."""

    # -- state ------------------------------------------------------------------

    @property
    def state(self) -> ModState:
        return self._state

    def is_(self, state: ModState) -> bool:
        """Tell whether the module is in ``state``."""
        return self._state is state

    @property
    def ctx(self) -> Context:
        """The context the module is registered in.

        Raises:
            PermissionDenied: the module has ``ModFlag.DENY_CTX``.
        """
        ctx = self._live("ctx")
        if self._fl & ModFlag.DENY_CTX:
            raise PermissionDenied(
                f"module {self.name!r}: ctx is denied by ModFlag.DENY_CTX"
            )
        return ctx

    @property
    def log(self) -> logging.Logger:
        """A logger named ``moduled.<context>.<module>``."""
        if self._log is None:
            ctx = self._ctx.name if self._ctx is not None else "-"
            self._log = logging.getLogger(f"moduled.{ctx}.{self.name}")
        return self._log

    def _live(self, call: str) -> Context:
        ctx = self._ctx
        if ctx is None:
            if self._state is _ZOMBIE:
                raise StateError(
                    f"module {self.name!r}: {call}: the module was deregistered "
                    "(zombie); create and register a new one"
                )
            raise StateError(
                f"module {self.name!r}: {call}: register the module in a context first"
            )
        return ctx

    def _take(self, call: str) -> Context:
        """Check that the module is live and take a rate-limit token."""
        ctx = self._live(call)
        tb = self._tb
        if tb is not None and not tb.take():
            raise RateLimited(
                f"module {self.name!r}: {call}: rate limit of {tb.rate}/s "
                f"(burst {tb.burst}) reached; slow down or raise it with tb_set"
            )
        return ctx

    def _wrong_state(self, call: str, allowed: str) -> StateError:
        return StateError(
            f"module {self.name!r}: {call}: not allowed while "
            f"{self._state.value}; allowed while {allowed}"
        )

    @loop_thread_only
    def start(self) -> None:
        """Start an IDLE or STOPPED module: RUNNING, then ``on_start``.

        Raises:
            StateError: the module is RUNNING, PAUSED or a zombie.
        """
        self._take("start")
        if self._state is not _IDLE and self._state is not _STOPPED:
            raise self._wrong_state("start", "idle or stopped")
        self._start()

    @loop_thread_only
    def stop(self) -> None:
        """Stop a RUNNING or PAUSED module, releasing its sources.

        Raises:
            StateError: the module is not RUNNING or PAUSED.
        """
        self._take("stop")
        if self._state is not _RUNNING and self._state is not _PAUSED:
            raise self._wrong_state("stop", "running or paused")
        self._stop()

    @loop_thread_only
    def pause(self) -> None:
        """Pause a RUNNING module: sources stay, events queue up.

        Raises:
            StateError: the module is not RUNNING.
        """
        self._take("pause")
        if self._state is not _RUNNING:
            raise self._wrong_state("pause", "running")
        self._pause()

    @loop_thread_only
    def resume(self) -> None:
        """Resume a PAUSED module; what queued up is delivered.

        Raises:
            StateError: the module is not PAUSED.
        """
        self._take("resume")
        if self._state is not _PAUSED:
            raise self._wrong_state("resume", "paused")
        self._resume()

    @loop_thread_only
    def bind(self, ref: Module | str) -> None:
        """Make this module follow ``ref``'s start, pause, resume and stop.

        Raises:
            NotFound: no module ``ref`` in the context.
            InvalidArgument: ``ref`` is this module, or would make a cycle.
        """
        ctx = self._take("bind")
        leader = ctx._resolve(ref, f"module {self.name!r}: bind")
        node: Module | None = leader
        while node is not None:
            if node is self:
                raise InvalidArgument(
                    f"module {self.name!r}: bind({leader.name!r}) would make a "
                    "cycle; bind to a module that does not follow this one"
                )
            node = node._leader
        if self._leader is not None:
            self._leader._followers.remove(self)
        self._leader = leader
        leader._followers.append(self)

    def _follow(self, action: str) -> None:
        for mod in list(self._followers):
            st = mod._state
            if action == "start" and st in (_IDLE, _STOPPED):
                mod._start()
            elif action == "stop" and st in (_RUNNING, _PAUSED):
                mod._stop()
            elif action == "pause" and st is _RUNNING:
                mod._pause()
            elif action == "resume" and st is _PAUSED:
                mod._resume()

    def _start(self) -> None:
        ctx = self._ctx
        assert ctx is not None
        self._state = _RUNNING
        self.failure = None
        self._failure_tb = None
        ctx._running += 1
        ctx._idle_discard(self)
        try:
            ok = self.on_start()
        except ctx._hook_errors as exc:
            self._fail(exc, "on_start")
            return
        if ok is False and self._state is _RUNNING:
            self._stop()
            return
        if self._state is _RUNNING:
            ctx._publish_system(MOD_STARTED, self)
            self._follow("start")

    def _stop(self, *, hook: bool = True) -> None:
        ctx = self._ctx
        assert ctx is not None
        self._state = _STOPPED
        ctx._running -= 1
        if hook:
            try:
                self.on_stop()
            except ctx._hook_errors as exc:
                self._record_failure(exc, "on_stop")
        self._reset()
        ctx._publish_system(MOD_STOPPED, self)
        self._follow("stop")

    def _pause(self) -> None:
        self._state = _PAUSED
        for src in list(self._sources.values()):
            pause = getattr(src, "_pause", None)
            if pause is not None:
                pause()
        self._follow("pause")

    def _resume(self) -> None:
        self._state = _RUNNING
        for src in list(self._sources.values()):
            resume = getattr(src, "_resume", None)
            if resume is not None:
                resume()
        if self._pending:
            self._flushing = True
            self._make_ready()
        self._follow("resume")

    def _reset(self) -> None:
        """Drop what a stop resets: sources, subscriptions, queues, limits."""
        ctx = self._ctx
        for src in list(self._sources.values()):
            self._drop_source(src)
        if ctx is not None and self._subs:
            ctx._topics.remove_module(self, list(self._subs))
        self._subs.clear()
        if self._pending:
            log.debug(
                "%s: stopped with %d pending events", self.name, len(self._pending)
            )
        self._clear_mailbox()

    def _record_failure(self, exc: BaseException, hook: str) -> None:
        self.failure = exc
        self._failure_tb = "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)
        )
        log.error(
            "%s: %s raised %s: %s",
            self.name,
            hook,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )

    def _fail(self, exc: BaseException, hook: str) -> None:
        """Stop the module after ``exc`` escaped ``hook``; the loop goes on."""
        self._record_failure(exc, hook)
        if self._state is _RUNNING or self._state is _PAUSED:
            self._stop(hook=hook != "on_stop")
        elif self._state is _IDLE and self._ctx is not None:
            self._ctx._idle_discard(self)
            self._state = _STOPPED
            self._ctx._publish_system(MOD_STOPPED, self)

    # -- behaviour ------------------------------------------------------------

    @loop_thread_only
    def become(self, handler: Handler) -> None:
        """Handle the next batches with ``handler`` instead of ``on_evt``.

        Raises:
            InvalidArgument: ``handler`` is not callable.
        """
        self._live("become")
        if not callable(handler):
            raise InvalidArgument(
                f"module {self.name!r}: become({handler!r}): pass a callable "
                "taking the list of events"
            )
        self._handlers.append(handler)

    @loop_thread_only
    def unbecome(self) -> None:
        """Go back to the handler before the last ``become``.

        Raises:
            StateError: nothing to go back from.
        """
        self._live("unbecome")
        if not self._handlers:
            raise StateError(f"module {self.name!r}: unbecome: no become() to undo")
        self._handlers.pop()

    # -- sources ----------------------------------------------------------------

    @loop_thread_only
    def register(
        self, source: Source, *, flags: SrcFlag = _NO_FLAGS, userdata: Any = None
    ) -> Source:
        """Register ``source`` on this module and start watching it.

        Returns:
            The source, for chaining.

        Raises:
            InvalidArgument: not a Source, or flags that do not apply to it.
            AlreadyRegistered: a source of the same type and key is registered
                and ``SrcFlag.FORCE`` was not given.
            SourceUnavailable: the kernel or privileges lack what it needs.
        """
        self._take("register")
        if not isinstance(source, Source):
            raise InvalidArgument(
                f"module {self.name!r}: register({source!r}): pass an md source "
                "such as md.Timer or md.Fd"
            )
        if not isinstance(flags, int) or isinstance(flags, bool):
            raise InvalidArgument(
                f"module {self.name!r}: register: flags must be md.SrcFlag values"
            )
        flags = SrcFlag(flags)
        ident = (source.type, source.key)
        old = self._sources.get(ident)
        if old is not None:
            if not flags & SrcFlag.FORCE:
                raise AlreadyRegistered(
                    f"module {self.name!r}: {old!r} is already registered; "
                    "deregister it or pass SrcFlag.FORCE to replace it"
                )
            self._drop_source(old)
        source._bind(self, flags, userdata)
        try:
            source._attach()
        except BaseException:
            source._unbind()
            raise
        self._sources[ident] = source
        return source

    @loop_thread_only
    def deregister(self, source: Source) -> None:
        """Stop watching ``source`` and release it.

        Raises:
            NotFound: ``source`` is not registered on this module.
        """
        self._take("deregister")
        if not isinstance(source, Source):
            raise InvalidArgument(
                f"module {self.name!r}: deregister({source!r}): pass a registered "
                "source (see sources())"
            )
        if source._module is not self:
            raise NotFound(
                f"module {self.name!r}: deregister({source!r}): not registered here"
            )
        self._drop_source(source)

    def _drop_source(self, source: Source) -> None:
        """Detach and forget ``source`` (internal: no token, no checks)."""
        ident = (source.type, source.key)
        if self._sources.get(ident) is source:
            del self._sources[ident]
        try:
            source._detach()
        except Exception:
            log.exception("%s: detaching %r failed", self.name, source)
        source._unbind()

    @loop_thread_only
    def sources(self, type: SrcType | None = None) -> list[Source]:
        """Return the registered sources, of one type or all, oldest first."""
        self._live("sources")
        if type is not None and not isinstance(type, SrcType):
            raise InvalidArgument(
                f"module {self.name!r}: sources({type!r}): pass an md.SrcType"
            )
        return [s for s in self._sources.values() if type is None or s.type is type]

    @property
    def parent(self) -> Module | None:
        """The module this one is a submodule of, if any."""
        return self._parent

    @property
    def children(self) -> tuple[Module, ...]:
        """The submodules registered under this module, oldest first."""
        return tuple(self._children)

    def _subtree(self) -> list[Module]:
        out = [self]
        for child in self._children:
            out.extend(child._subtree())
        return out

    @loop_thread_only
    def lookup(self, name: str) -> Module | None:
        """Return the module called ``name`` in this context, or None."""
        return self._live("lookup")._lookup(name)

    # -- introspection ----------------------------------------------------------

    @loop_thread_only
    def stats(self) -> ModStats:
        """Return the module's counters (see :class:`ModStats`)."""
        self._live("stats")
        now = _monotonic_ns()
        actions = self._sent + self._recv
        span_ms = max((now - self._registered_ns) / 1e6, 1e-3)
        return ModStats(
            inactive_ms=(now - self._last_ns) // 1_000_000,
            activity_freq=actions / span_ms,
            sent_msgs=self._sent,
            recv_msgs=self._recv,
            lost_events=self._lost,
            refused_msgs=self._refused,
            discarded_events=self._discarded,
            pending=len(self._pending),
        )

    @loop_thread_only
    def dump(self) -> dict[str, Any]:
        """Describe the module as a JSON-serialisable dict."""
        self._live("dump")
        failure = None
        if self.failure is not None:
            failure = {
                "type": type(self.failure).__name__,
                "message": str(self.failure),
                "traceback": self._failure_tb,
            }
        return {
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "state": self._state.value,
            "flags": [f.name for f in ModFlag if f in self.flags],
            "failure": failure,
            "stats": self.stats()._asdict(),
            "sources": [s.dump() for s in self._sources.values()],
            "subscriptions": [s.dump() for s in self._subs.values()],
            "stashed": len(self._stash),
            "batch": {"size": self._batch_size, "timeout_ns": self._batch_timeout},
            "rate_limit": (
                {"rate": self._tb.rate, "burst": self._tb.burst} if self._tb else None
            ),
            "mailbox_limit": self._limit,
            "bound_to": self._leader.name if self._leader else None,
            "parent": self._parent.name if self._parent else None,
            "children": [c.name for c in self._children],
        }

    def __repr__(self) -> str:
        state = getattr(self, "_state", None)
        where = state.value if state is not None else "uninitialised"
        return f"<{type(self).__name__} {self.name!r} {where}>"
