"""Contexts: a set of modules and the loop that serves them.

One dispatch round polls the context's epoll instance, runs the callbacks of
readable fds and due internal timers, delivers the batches of ready modules,
runs deferred work and evaluates idle modules.  Messages never go through a
kernel object: a send appends to the recipient's pending list and puts it on
the ready list, and the poll of a round with work to do does not block.

The context's epoll fd is its ``fileno()``, so a foreign loop (``selectors``,
asyncio's ``add_reader``) can drive it with ``dispatch()``.  An eventfd in
the epoll set keeps it readable while messages are pending outside a round,
and carries wake-ups from other threads.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from .errors import (
    HOOK_ERRORS,
    AlreadyRegistered,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StateError,
)
from .events import Event, PsMessage
from .flags import ModFlag, ModState, SrcType
from .module import Module
from .poller import Poller, TimerHandle
from .pubsub import CTX_STARTED, CTX_STOPPED, CTX_TICK, Topics
from .store import EventStore, replay_into, replay_rows
from .threads import loop_thread_only

__all__ = ["Context", "CtxStats"]

log = logging.getLogger("moduled.core")

_monotonic_ns = time.monotonic_ns
_RUNNING = ModState.RUNNING
_PAUSED = ModState.PAUSED
_IDLE = ModState.IDLE
_PS = SrcType.PS

#: Deliveries in one round before the loop polls its fds again, so that a
#: message ping-pong cannot starve fds and timers.
ROUND_BUDGET = 1024
#: Deliveries, and nanoseconds, allowed for flushing messages at loop exit:
#: modules that keep telling each other must not hold the exit forever.
FLUSH_BUDGET = 100_000
FLUSH_TIMEOUT_NS = 1_000_000_000
_EPOLLIN = select.EPOLLIN


class CtxStats(NamedTuple):
    """A context's counters.

    ``activity_freq`` is the busy fraction of the looping time (0..1);
    ``total_idle_time`` and ``total_looping_time`` are in milliseconds.
    """

    activity_freq: float
    total_idle_time: float
    total_looping_time: float
    recv_msgs: int
    num_modules: int
    running_modules: int


class _ModuleView(Mapping[str, Module]):
    """A read-only view of a context's modules, in registration order."""

    __slots__ = ("_d",)

    def __init__(self, d: dict[str, Module]) -> None:
        self._d = d

    def __getitem__(self, name: str) -> Module:
        return self._d[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


def _set_thread_name(name: str) -> str | None:
    """Name the calling thread (as ``ps -L`` shows it); return the old name."""
    try:
        with open("/proc/thread-self/comm", "rb+", buffering=0) as f:
            old = f.read().decode(errors="replace").rstrip("\n")
            f.seek(0)
            f.write(name.encode()[:15])
    except OSError:
        return None
    return old


class Context(Poller):
    """A set of modules served by one loop.

    Args:
        name: the context's name; the looping thread is named after it.
        persist: keep the context usable after its last module is gone.
        userdata: anything; kept as ``self.userdata``.

    A context belongs to the thread that loops it: call its methods (and
    its modules') from that thread only, except ``quit``.
    """

    def __init__(
        self, name: str, *, persist: bool = False, userdata: Any = None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"context name {name!r}: give a non-empty string")
        if not isinstance(persist, bool):
            raise InvalidArgument(
                f"context {name!r}: persist={persist!r}: pass True or False"
            )
        self.name = name
        self.persist = persist
        self.userdata = userdata
        self._modules: dict[str, Module] = {}
        self._view = _ModuleView(self._modules)
        self._idle: dict[Module, None] = {}
        self._orphans: dict[str, list[Module]] = {}  # submodules awaiting a parent
        self._ready: collections.deque[Module] = collections.deque()
        self._topics = Topics()
        self._running = 0
        self._busy = False
        self._looping = False
        self._finalized = False
        self._closed = False
        self._quit = False
        self._quit_code = 0

        #: What a hook or source callback may raise and only fail its module;
        #: a daemon widens it to every exception its plugins could raise.
        self._hook_errors: tuple[type[BaseException], ...] = HOOK_ERRORS
        self._init_poller()
        self._tick: TimerHandle | None = None
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None
        self._tick_ns = 0
        self._thread: threading.Thread | None = None
        self._owner: int | None = None  # ident of the looping thread
        self._old_thread_name: str | None = None

        self._store: EventStore | None = None
        #: Called as ``fn(module, batch)`` before each delivery (loop thread):
        #: the recorder and the daemon's tail tap.
        self._observers: list[Callable[[Module, list[Event]], Any]] = []
        self._replay_path: str | None = None
        self._replay_counts: dict[str, int] | None = None

        self._start_ns = 0
        self._looping_ns = 0
        self._idle_ns = 0
        self._recv = 0

    # -- modules ------------------------------------------------------------

    @property
    def modules(self) -> Mapping[str, Module]:
        """The registered modules by name, in registration order (read-only)."""
        return self._view

    @property
    def looping(self) -> bool:
        """True between the start and the end of ``loop()`` or dispatching."""
        return self._looping

    def _check_open(self, call: str) -> None:
        if self._closed:
            raise StateError(
                f"context {self.name!r}: {call}: the context is finished "
                "(its last module left); create a new one or pass persist=True"
            )

    @loop_thread_only
    def register(self, module: Module, *, parent: Module | str | None = None) -> Module:
        """Add ``module``; it starts when its ``on_eval`` says so.

        With ``parent`` (a module or a module's name) the module is a
        submodule: it follows the parent's start, pause, resume and stop
        instead of starting on its own, is deregistered with it, and receives
        the parent's ``forward`` messages.  A parent not registered yet is
        waited for: the child stays idle until a module of that name arrives.

        Returns:
            The module, for chaining.

        Raises:
            InvalidArgument: not a Module, or its ``__init__`` was not called;
                a parent that is not a module or name, or is the module.
            AlreadyRegistered: the name is taken by a module without
                ``ModFlag.ALLOW_REPLACE``, or the module is registered already.
            PermissionDenied: the context is finalized.
        """
        self._check_open("register")
        if not isinstance(module, Module) or not hasattr(module, "_state"):
            raise InvalidArgument(
                f"context {self.name!r}: register({module!r}): pass an md.Module "
                "whose __init__ ran (call super().__init__() in yours)"
            )
        if self._finalized:
            raise PermissionDenied(
                f"context {self.name!r}: register({module.name!r}): the context "
                "is finalized"
            )
        if module._ctx is not None or module._state is not _IDLE:
            raise AlreadyRegistered(
                f"context {self.name!r}: module {module.name!r} is already "
                f"registered or was deregistered ({module._state.value}); "
                "create a new module object"
            )
        parent_name = self._parent_name(module, parent)
        old = self._modules.get(module.name)
        if old is not None:
            if not old.flags & ModFlag.ALLOW_REPLACE:
                raise AlreadyRegistered(
                    f"context {self.name!r}: a module named {module.name!r} is "
                    "already registered; pick another name or give the old one "
                    "ModFlag.ALLOW_REPLACE"
                )
            self.deregister(old)
        module._ctx = self
        module._registered_ns = module._last_ns = _monotonic_ns()
        self._modules[module.name] = module
        self._idle[module] = None
        if parent_name is not None:
            leader = self._modules.get(parent_name)
            if leader is not None:
                self._adopt(leader, module)
            else:
                self._orphans.setdefault(parent_name, []).append(module)
                self._idle.pop(module, None)
        for child in self._orphans.pop(module.name, ()):
            self._adopt(module, child)
        if not self._busy:
            self._wake()
        log.debug("%s: registered in %s", module.name, self.name)
        return module

    def _parent_name(self, module: Module, parent: Module | str | None) -> str | None:
        if parent is None:
            return None
        if isinstance(parent, Module):
            if parent._ctx is not None and parent._ctx is not self:
                raise InvalidArgument(
                    f"context {self.name!r}: register({module.name!r}): parent "
                    f"{parent.name!r} belongs to context {parent._ctx.name!r}"
                )
            parent = parent.name
        if not isinstance(parent, str) or not parent or parent == module.name:
            raise InvalidArgument(
                f"context {self.name!r}: register({module.name!r}, parent="
                f"{parent!r}): give another module or its name"
            )
        return parent

    def _adopt(self, parent: Module, child: Module) -> None:
        """Make ``child`` a submodule of ``parent``."""
        child._parent = parent
        parent._children.append(child)
        if child._leader is not None:
            child._leader._followers.remove(child)
        child._leader = parent
        parent._followers.append(child)
        if parent._state is not _RUNNING and parent._state is not _PAUSED:
            self._idle.pop(child, None)  # it starts when its parent does

    @loop_thread_only
    def deregister(self, module: Module | str) -> None:
        """Stop ``module`` if needed and remove it; it becomes a zombie.

        Raises:
            NotFound: no such module in this context.
            PermissionDenied: the module has ``ModFlag.PERSIST`` and the
                context is looping.
        """
        mod = self._resolve(module, f"context {self.name!r}: deregister")
        if self._looping:
            for m in mod._subtree():
                if m.flags & ModFlag.PERSIST:
                    raise PermissionDenied(
                        f"context {self.name!r}: module {m.name!r} has "
                        "ModFlag.PERSIST and cannot be deregistered while the "
                        "context loops"
                    )
        self._remove(mod)

    def _remove(self, mod: Module) -> None:
        for child in list(mod._children):
            self._remove(child)
        if mod._parent is not None:
            mod._parent._children.remove(mod)
            mod._parent = None
        for waiting in self._orphans.values():
            if mod in waiting:
                waiting.remove(mod)
        if mod._state is _RUNNING or mod._state is _PAUSED:
            mod._stop()
        else:
            mod._reset()
        for follower in mod._followers:
            follower._leader = None
        if mod._leader is not None:
            mod._leader._followers.remove(mod)
            mod._leader = None
        mod._followers = []
        del self._modules[mod.name]
        self._idle.pop(mod, None)
        mod._state = ModState.ZOMBIE
        mod._ctx = None
        log.debug("%s: deregistered from %s", mod.name, self.name)

    @loop_thread_only
    def lookup(self, name: str) -> Module | None:
        """Return the module called ``name``, or None."""
        if not isinstance(name, str):
            raise InvalidArgument(
                f"context {self.name!r}: lookup({name!r}): pass a module name"
            )
        return self._modules.get(name)

    def _lookup(self, name: str) -> Module | None:
        return self._modules.get(name)

    def _resolve(self, ref: Module | str, what: str) -> Module:
        if isinstance(ref, str):
            mod = self._modules.get(ref)
        elif isinstance(ref, Module):
            mod = ref if ref._ctx is self else None
        else:
            raise InvalidArgument(f"{what}({ref!r}): pass a module or its name")
        if mod is None:
            name = ref if isinstance(ref, str) else ref.name
            raise NotFound(f"{what}({name!r}): no such module in context {self.name!r}")
        return mod

    def _target(self, ref: Module | str, sender: Module, call: str) -> Module:
        """Resolve a message recipient, which must be running or paused."""
        mod: Any = self._modules.get(ref) if isinstance(ref, str) else ref
        if mod is None or getattr(mod, "_ctx", None) is not self:
            mod = self._resolve(ref, f"module {sender.name!r}: {call}")
        st = mod._state
        if st is not _RUNNING and st is not _PAUSED:
            raise StateError(
                f"module {sender.name!r}: {call}: recipient {mod.name!r} is "
                f"{st.value}; it receives messages only while running or paused"
            )
        return mod  # type: ignore[no-any-return]

    def _idle_discard(self, module: Module) -> None:
        self._idle.pop(module, None)

    @loop_thread_only
    def finalize(self) -> None:
        """Refuse any further module registration."""
        self._finalized = True

    # -- pub/sub --------------------------------------------------------------

    def _publish(self, topic: str, msg: PsMessage, sender: Module | None) -> int:
        subs = self._topics.match(topic)
        if not subs:
            return 0
        targets = [
            s for s in subs if s.module._state is _RUNNING or s.module._state is _PAUSED
        ]
        if sender is not None:
            for s in targets:
                if s.module._limit:
                    sender._check_room(s.module, "publish")
        ts = _monotonic_ns()
        shared = Event(_PS, msg, None, ts)
        for s in targets:
            ud = s.userdata
            s.module._enqueue(shared if ud is None else Event(_PS, msg, ud, ts), s.prio)
        return len(targets)

    def _publish_system(self, topic: str, sender: Module | None) -> None:
        """Publish a system topic; mailbox limits do not apply to these."""
        if self._topics.match(topic):
            self._publish(topic, PsMessage(sender, topic, None), None)

    @loop_thread_only
    def set_tick(self, ns: int) -> None:
        """Publish ``md.CTX_TICK`` every ``ns`` nanoseconds; 0 turns it off.

        Raises:
            InvalidArgument: ``ns`` is negative or not an int.
        """
        if not isinstance(ns, int) or isinstance(ns, bool) or ns < 0:
            raise InvalidArgument(
                f"context {self.name!r}: set_tick({ns!r}): pass nanoseconds >= 0"
            )
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self._tick_ns = ns
        if ns and self._looping:
            self._tick = self._call_at(_monotonic_ns() + ns, self._on_tick)

    def _on_tick(self) -> None:
        assert self._tick is not None
        self._tick = self._call_at(self._tick.deadline + self._tick_ns, self._on_tick)
        self._publish_system(CTX_TICK, None)

    # -- record and replay ------------------------------------------------------

    @loop_thread_only
    def store(
        self, path: str | os.PathLike[str] | None, *, exclude: Iterable[str] = ()
    ) -> None:
        """Record every event delivered from now on into the SQLite file
        ``path`` (fd events excepted, and the events of the modules named in
        ``exclude``); None stops recording.

        Raises:
            InvalidArgument: not a path, or a file that is not a recording.
        """
        self._check_open("store")
        if self._store is not None:
            self._remove_observer(self._record)
            self._store.close()
            self._store = None
        if path is not None:
            self._store = EventStore(path, exclude=exclude)
            self._add_observer(self._record)

    def _record(self, module: Module, batch: list[Event]) -> None:
        if self._store is not None:
            self._store.record(module.name, batch)

    def _add_observer(self, fn: Callable[[Module, list[Event]], Any]) -> None:
        """Call ``fn(module, batch)`` before every delivery (loop thread).

        ``fn`` must not raise and must not keep the batch list itself.
        """
        self._observers.append(fn)

    def _remove_observer(self, fn: Callable[[Module, list[Event]], Any]) -> None:
        with contextlib.suppress(ValueError):
            self._observers.remove(fn)

    @loop_thread_only
    def replay_from(self, path: str | os.PathLike[str]) -> None:
        """Deliver the events recorded in ``path`` to the same-named modules
        when the loop next starts, before it polls, with ``ev.replayed`` set.

        Raises:
            NotFound: no such file.
            InvalidArgument: not a moduled recording.
        """
        self._check_open("replay_from")
        rows = replay_rows(path)  # checks the file now, reads it at loop start
        rows.close()
        self._replay_path = os.fspath(path)

    # -- the loop -----------------------------------------------------------

    def _round(self, block: bool) -> None:
        ready = self._ready
        timers = self._timers
        if ready or self._soon or not block:
            timeout = 0.0
        elif timers:
            timeout = max(0.0, (timers[0].deadline - _monotonic_ns()) / 1e9)
        else:
            timeout = -1.0

        self._poll_once(timeout)

        budget = ROUND_BUDGET
        while ready and budget:
            ready.popleft()._deliver()
            budget -= 1

        if self._soon:
            soon, self._soon = self._soon, []
            for callback in soon:
                self._run_callback(callback)

        if self._idle:
            self._evaluate()

        if self._store is not None:
            self._store.maybe_commit()

    def _worker_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """The threads that run THREADED modules' batches (created lazily)."""
        if self._workers is None:
            self._workers = concurrent.futures.ThreadPoolExecutor(
                max_workers=min(32, (os.cpu_count() or 1) + 4),
                thread_name_prefix=f"{self.name[:8]}-w",
            )
        return self._workers

    def _join_workers(self) -> None:
        """Wait for THREADED batches in flight, then take their outcomes."""
        if self._workers is not None:
            self._workers.shutdown(wait=True)
            self._workers = None
            self._on_wake()

    def _drain(self) -> None:
        """Deliver to ready modules until none is left (bounded)."""
        budget = FLUSH_BUDGET
        while self._ready and budget:
            self._ready.popleft()._deliver()
            budget -= 1

    def _evaluate(self) -> None:
        """Start the idle modules whose ``on_eval`` agrees, in order."""
        for mod in list(self._idle):
            if mod._state is not _IDLE or mod._ctx is not self:
                self._idle.pop(mod, None)
                continue
            try:
                ok = mod.on_eval()
            except self._hook_errors as exc:
                mod._fail(exc, "on_eval")
                continue
            if ok:
                mod._start()

    def _begin(self) -> None:
        self._check_open("loop")
        if self._looping:
            raise StateError(f"context {self.name!r}: loop: already looping")
        self._thread = threading.current_thread()
        self._owner = threading.get_ident()
        self._old_thread_name = _set_thread_name(self.name)
        self._looping = True
        self._busy = True
        self._quit = False
        self._quit_code = 0
        self._start_ns = _monotonic_ns()
        try:
            self._evaluate()
            self._publish_system(CTX_STARTED, None)
            if self._replay_path is not None:
                path, self._replay_path = self._replay_path, None
                self._replay_counts = replay_into(self, path)
                log.info(
                    "%s: replayed %d events from %s (%d skipped)",
                    self.name,
                    self._replay_counts["replayed"],
                    path,
                    self._replay_counts["skipped"],
                )
            if self._tick_ns and self._tick is None:
                first = self._start_ns + self._tick_ns
                self._tick = self._call_at(first, self._on_tick)
        finally:
            self._busy = False
        log.info("%s: looping", self.name)

    def _end(self) -> None:
        self._busy = True
        try:
            self._publish_system(CTX_STOPPED, None)
            self._join_workers()
            budget = FLUSH_BUDGET
            deadline = _monotonic_ns() + FLUSH_TIMEOUT_NS
            while self._ready and budget:
                self._ready.popleft()._deliver()
                budget -= 1
                if not budget & 255 and _monotonic_ns() > deadline:
                    break
            if self._ready:
                log.warning(
                    "%s: gave up flushing messages at exit after %d deliveries",
                    self.name,
                    FLUSH_BUDGET - budget,
                )
            self._join_workers()  # no on_evt may run beside an on_stop
            for mod in list(self._modules.values()):
                if mod._state is _RUNNING or mod._state is _PAUSED:
                    mod._stop()
            self._ready.clear()
            if self._store is not None:
                self._store.commit()
            if self._tick is not None:
                self._tick.cancel()
                self._tick = None
        finally:
            self._busy = False
            self._looping = False
            self._looping_ns += _monotonic_ns() - self._start_ns
            if self._old_thread_name is not None:
                _set_thread_name(self._old_thread_name)
            self._on_wake()  # calls queued by other threads still run here
            self._thread = None
            self._owner = None
        log.info("%s: stopped with code %d", self.name, self._quit_code)
        if not self.persist and not self._modules:
            self._close()

    def _close(self) -> None:
        self._closed = True
        if self._store is not None:
            self._store.close()
            self._store = None
        self._close_poller()

    def loop(self) -> int:
        """Serve the modules until ``quit()`` or until none is running.

        Returns:
            The code given to ``quit()``, or 0.

        Raises:
            StateError: already looping, or the context is finished.
        """
        self._begin()
        try:
            while not self._quit and (self._running or self._ready):
                self._busy = True
                self._round(True)
        finally:
            self._busy = False
            self._end()
        return self._quit_code

    def quit(self, code: int = 0) -> None:
        """Make ``loop()`` return ``code`` once the current round is over.

        May be called from any thread.

        Raises:
            InvalidArgument: ``code`` is not an int.
        """
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
            raise InvalidArgument(
                f"context {self.name!r}: quit({code!r}): pass an exit code 0..255"
            )
        self._quit_code = code
        self._quit = True
        self._wake()

    def fileno(self) -> int:
        """The fd that is readable whenever ``dispatch()`` has work."""
        self._check_open("fileno")
        return self._ep.fileno()

    def dispatch(self) -> None:
        """Run one round without blocking, for a foreign loop.

        The first call starts the context (and runs a round); the call after
        ``quit()`` (or after the last module stopped) stops it, and
        ``looping`` turns False.
        """
        if not self._looping:
            self._begin()
        elif self._quit or not (self._running or self._ready or self._idle):
            self._end()
            return
        self._busy = True
        try:
            self._round(False)
        finally:
            self._busy = False
        if self._ready or self._soon or self._quit or not self._running:
            self._wake()

    # -- introspection ----------------------------------------------------------

    @loop_thread_only
    def stats(self) -> CtxStats:
        """Return the context's counters (see :class:`CtxStats`)."""
        looping = self._looping_ns
        if self._looping:
            looping += _monotonic_ns() - self._start_ns
        idle = min(self._idle_ns, looping)
        return CtxStats(
            activity_freq=(looping - idle) / looping if looping else 0.0,
            total_idle_time=idle / 1e6,
            total_looping_time=looping / 1e6,
            recv_msgs=self._recv,
            num_modules=len(self._modules),
            running_modules=sum(
                1 for m in self._modules.values() if m._state is _RUNNING
            ),
        )

    @loop_thread_only
    def dump(self) -> dict[str, Any]:
        """Describe the context and its modules as a JSON-serialisable dict."""
        return {
            "name": self.name,
            "looping": self._looping,
            "persist": self.persist,
            "finalized": self._finalized,
            "closed": self._closed,
            "stats": self.stats()._asdict(),
            "store": self._store.dump() if self._store is not None else None,
            "replay": self._replay_counts,
            "modules": [m.dump() for m in self._modules.values()],
        }

    def __repr__(self) -> str:
        state = "looping" if self._looping else "idle"
        return f"<Context {self.name!r} {state} modules={len(self._modules)}>"

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(OSError, AttributeError):
                self._close_poller()
