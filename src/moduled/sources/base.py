"""The base of every source, and the contract between sources and the loop.

A source is registered on a module (``module.register(src)``).  Registration
checks the key, then calls :meth:`Source._attach`, in which the source opens
its kernel objects and asks the context's loop to watch them:

* ``self._ctx._add_reader(fd, callback)`` / ``_remove_reader(fd)``: call
  ``callback()`` on the loop thread whenever ``fd`` is readable
  (level-triggered).
* ``self._ctx._call_at(deadline_ns, callback) -> TimerHandle``: call
  ``callback()`` once at a ``time.monotonic_ns()`` deadline; ``.cancel()``.
* ``self._ctx._call_soon(callback)``: call ``callback()`` after the current
  dispatch round, before the loop polls again.  Kernel sources use it to
  compile every probe a module registered in one round into one program.
* ``self._ctx._call_threadsafe(callback)``: from any thread; the loop runs
  ``callback()`` on its own thread, in order.

When something happens the source calls :meth:`_emit` (or :meth:`_emit_many`
with a list) with the event data; the module's delivery policy (priority,
batching, pause) decides when ``on_evt`` sees it.  Events a source could not
deliver (kernel queue overflow, ring buffer full) are added to ``_lost`` so
that stats and dumps account for every one.

:meth:`_detach` undoes :meth:`_attach`.  It is called on deregistration,
when the module stops and when the loop exits, and must be idempotent.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidArgument
from ..events import Event
from ..flags import PRIO_MASK, SrcFlag, SrcType, priority

if TYPE_CHECKING:
    from ..context import Context
    from ..module import Module

__all__ = ["Source"]

_monotonic_ns = time.monotonic_ns
#: Flags every source type accepts; the rest are per type (``type_flags``).
GENERIC_FLAGS = PRIO_MASK | SrcFlag.ONESHOT | SrcFlag.FORCE


class Source(abc.ABC):
    """A producer of events for one module.

    Subclasses set ``type``, implement :attr:`key`, :meth:`_attach` and
    :meth:`_detach`, and may override :meth:`_dump` to add their own fields.
    """

    type: ClassVar[SrcType]
    #: Flags forced on every registration of this kind (Fd: PRIO_HIGH).
    forced_flags: ClassVar[SrcFlag] = SrcFlag(0)
    #: Per-type flags (above bit 32) this kind accepts.
    type_flags: ClassVar[SrcFlag] = SrcFlag(0)

    _module: Module | None = None
    _ctx: Context | None = None
    _flags: SrcFlag = SrcFlag(0)
    _prio: SrcFlag = SrcFlag.PRIO_NORM
    _userdata: Any = None
    _events: int = 0
    _lost: int = 0

    @property
    @abc.abstractmethod
    def key(self) -> Hashable:
        """What makes two sources of one type the same registration."""

    @property
    def module(self) -> Module | None:
        """The module this source is registered on, if any."""
        return self._module

    @property
    def flags(self) -> SrcFlag:
        return self._flags

    @property
    def userdata(self) -> Any:
        return self._userdata

    @property
    def events(self) -> int:
        """How many events this source has emitted."""
        return self._events

    @property
    def lost(self) -> int:
        """How many events were lost before they could be emitted."""
        return self._lost

    # -- registration, called by Module.register/deregister ----------------

    def _bind(self, module: Module, flags: SrcFlag, userdata: Any) -> None:
        """Remember who owns the source; validate the flags for this type."""
        if self._module is not None:
            raise InvalidArgument(
                f"{self!r}: already registered on module {self._module.name!r}; "
                "create a new source object"
            )
        # int arithmetic: ~ on an IntFlag only complements its known bits.
        bad = int(flags) & ~int(GENERIC_FLAGS | self.type_flags)
        if bad:
            raise InvalidArgument(
                f"{self!r}: flag {SrcFlag(bad)!r} does not apply to "
                f"{self.type.name} sources"
            )
        if bin(flags & PRIO_MASK).count("1") > 1:
            raise InvalidArgument(
                f"{self!r}: flags {flags & PRIO_MASK!r}: give one priority at most"
            )
        flags |= self.forced_flags
        self._prio = priority(flags)
        self._module = module
        self._ctx = module._ctx
        self._flags = flags
        self._userdata = userdata

    def _unbind(self) -> None:
        self._module = None
        self._ctx = None

    @abc.abstractmethod
    def _attach(self) -> None:
        """Open kernel objects and start watching them."""

    @abc.abstractmethod
    def _detach(self) -> None:
        """Stop watching and release everything; idempotent."""

    # -- event production ---------------------------------------------------

    def _emit(self, data: Any) -> None:
        """Queue one event carrying ``data`` for the owning module."""
        module = self._module
        if module is None:
            return
        self._events += 1
        module._enqueue(
            Event(self.type, data, self._userdata, _monotonic_ns()), self._prio
        )
        if self._flags & SrcFlag.ONESHOT:
            module._drop_source(self)

    def _emit_many(self, datas: list[Any]) -> None:
        """Queue one event for each item of ``datas``, in order."""
        module = self._module
        if module is None or not datas:
            return
        if self._flags & SrcFlag.ONESHOT:
            self._emit(datas[0])
            return
        self._events += len(datas)
        t, ud, ts = self.type, self._userdata, _monotonic_ns()
        module._enqueue_many([Event(t, d, ud, ts) for d in datas], self._prio)

    def _add_lost(self, count: int) -> None:
        """Account for ``count`` events that never made it to the module."""
        self._lost += count
        if self._module is not None:
            self._module._lost += count

    # -- introspection ------------------------------------------------------

    def _dump(self) -> dict[str, Any]:
        """Type-specific fields for :meth:`dump`; JSON-serialisable."""
        return {}

    def dump(self) -> dict[str, Any]:
        """Describe the source as a JSON-serialisable dict."""
        key = self.key
        d: dict[str, Any] = {
            "type": self.type.value,
            "key": key if isinstance(key, (int, float, str)) else repr(key),
            "flags": int(self._flags),
            "events": self._events,
            "lost": self._lost,
        }
        d.update(self._dump())
        return d

    def __repr__(self) -> str:
        try:
            key = self.key
        except Exception:
            key = "?"
        return f"{type(self).__name__}({key!r})"
