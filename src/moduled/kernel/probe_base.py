"""The base of every eBPF probe source: program, ring buffer, accounting.

Each source produces :class:`ProbeEvent` records through its own BPF ring
buffer (see :mod:`.ringbuf`), compiled together with the module's other
probes of the same dispatch round (see :mod:`.program`).  bcc is imported
only when a program is built, never at ``import moduled``.

Kernel facts these sources rely on:

* kprobes need CONFIG_KPROBES; some kernels (this project's CI VM among
  them) compile them out, so :class:`Kprobe` raises ``SourceUnavailable``
  there and names the tracepoint to use instead;
* a tracepoint program may read its record only within the size the format
  file gives; fields are read at those offsets and nowhere else;
* uprobe events bcc creates stay in ``uprobe_events`` until detached; every
  probe detaches on deregistration, module stop and loop exit.

Field names: ``pid`` is the kernel's (the thread id), ``tgid`` the process
id.  A tracepoint field named like a built-in one (``pid``, ``comm``, ...)
is delivered as ``tp_<name>``.
"""

from __future__ import annotations

import abc
import gc
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import InvalidArgument
from ..flags import SrcType
from ..sources.base import Source
from . import doctor
from .fields import Derive
from .hooks import Attachment, release
from .program import Program, enlist
from .record import HEADER, Layout
from .ringbuf import RingReader

__all__ = ["DEFAULT_RING_PAGES", "ProbeSource"]

log = logging.getLogger(__name__)

#: Default ring size: 4 MiB holds ~40,000 records of 100 bytes, i.e. 400 ms
#: of a 100,000 events/s storm while the loop is busy elsewhere.
DEFAULT_RING_PAGES = 1024
BUILTIN_NAMES = {f.name for f in HEADER} | {"retval"}
_NEEDS = ("privileges", "bcc", "tracefs", "headers", "ringbuf")


def _check_ring_pages(pages: Any) -> int:
    if (
        not isinstance(pages, int)
        or isinstance(pages, bool)
        or pages < 1
        or pages & (pages - 1)
        or pages > 1 << 18
    ):
        raise InvalidArgument(
            f"ring_pages {pages!r}: expected a power of two from 1 to 262144"
        )
    return pages


class _GcPause:
    """Pause the cyclic garbage collector until the end of a loop round.

    A batch of records is three tracked objects a record (fields, ProbeEvent,
    Event) that live until ``on_evt`` returns, in the same round unless the
    batch is larger than the loop hands over at once.  With the collector
    on, a storm pays a young-generation pass every few hundred records and a
    full pass every few thousand, over every object alive: more than the
    decoding itself (bench/kernel.py: 2.3 times the rate without).  The
    records hold no cycles; freed after delivery they take the collector's
    counters back down, so little is left to collect when it resumes.
    Cycles other code makes in that round are collected when it resumes.
    """

    held = False

    def hold(self, ctx: Any) -> None:
        if self.held or not gc.isenabled():
            return
        gc.disable()
        self.held = True
        ctx._call_soon(self.release)

    def release(self) -> None:
        if self.held:
            self.held = False
            gc.enable()


_gc_pause = _GcPause()


class ProbeSource(Source):
    """What every eBPF source shares: program, ring buffer and accounting."""

    type: ClassVar[SrcType] = SrcType.PROBE

    _reader: RingReader | None = None
    _program: Program | None = None
    _slot = -1
    _state = "new"
    _error: str | None = None

    def __init__(self, *, ring_pages: int = DEFAULT_RING_PAGES) -> None:
        self._ring_pages = _check_ring_pages(ring_pages)
        self._attachments: list[Attachment] = []
        self._layout: Layout | None = None

    @property
    def name(self) -> str:
        """The probe's name, as in ``ProbeEvent.probe``."""
        return str(self.key)

    @property
    def state(self) -> str:
        """``new``, ``pending``, ``attached``, ``failed`` or ``detached``."""
        return self._state

    # -- Source contract ------------------------------------------------------

    def _attach(self) -> None:
        doctor.require(self.name, _NEEDS)
        self._prepare()
        self._program = enlist(self)
        self._state = "pending"

    def _detach(self) -> None:
        _gc_pause.release()
        if self._state in ("detached", "new"):
            return
        if self._reader is not None:
            if self._ctx is not None:
                self._ctx._remove_reader(self._reader_fd)
            self._reader.close()
            self._reader = None
        program = self._program
        self._release_attachments()
        self._state = "detached"
        if program is not None:
            program.release(self)
        self._program = None

    def _dump(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "probe": self.name,
            "state": self._state,
            "ring_pages": self._ring_pages,
        }
        if self._error:
            d["error"] = self._error
        return d

    # -- called by the program ------------------------------------------------

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Check everything against the kernel; set ``self._layout``."""

    @abc.abstractmethod
    def _c_code(self, slot: int) -> str:
        """The C of this probe in slot ``slot``."""

    @abc.abstractmethod
    def _attach_functions(self, bpf: Any) -> None:
        """Attach the compiled functions to their kernel hooks."""

    def _own_text(self) -> str:
        """C this probe wrote itself (where bcc may auto-attach functions)."""
        return ""

    def _derived(self) -> Mapping[str, Derive] | None:
        """Fields computed on access from raw ones (see fields.fields_class)."""
        return None

    def _ring_name(self, slot: int) -> str:
        return f"md_ring_{slot}"

    def _keep(self, attachment: Attachment) -> None:
        """Own ``attachment``: it is released when this probe detaches."""
        self._attachments.append(attachment)

    def _start(self, program: Program, slot: int) -> None:
        assert self._layout is not None
        self._slot = slot
        bpf = program.bpf
        self._attach_functions(bpf)
        ring = bpf[self._ring_name(slot).encode()]
        self._reader = RingReader(ring.map_fd, self._ring_pages)
        self._reader_fd = ring.map_fd
        self._decode = self._layout.decoder(self.name, self._derived())
        self._lost_counter = program.lost
        self._ctx._add_reader(ring.map_fd, self._on_ready)  # type: ignore[union-attr]
        self._state = "attached"
        log.info("%r: attached (slot %d)", self, slot)

    def _fail(self, why: str) -> None:
        self._release_attachments()
        self._state = "failed"
        self._error = why

    def _release_attachments(self) -> None:
        for a in self._attachments:
            try:
                release(a)
            except OSError as exc:
                log.warning("%r: detach %s fd %d: %s", self, a.kind, a.fd, exc)
        self._attachments.clear()

    def _on_ready(self) -> None:
        reader = self._reader
        if reader is None:
            return
        _gc_pause.hold(self._ctx)
        events = reader.consume(self._decode)
        if events:
            self._emit_many(events)
        lost = self._lost_counter.delta(self._slot) if self._lost_counter else 0
        if reader.short:
            log.warning(
                "%r: %d records shorter than the declared layout", self, reader.short
            )
            lost += reader.short
            reader.short = 0
        if lost:
            log.warning("%r: ring buffer full: %d records lost", self, lost)
            self._add_lost(lost)

    def _flush(self) -> None:
        """Consume what is ready now (tests, benches: before detaching)."""
        self._on_ready()
