"""Custom BPF C, for what the declarative probes cannot say.

The text is compiled into the module's program like any probe.  moduled
declares the ring buffer; the text uses it under the name given as
``events`` (``events.ringbuf_reserve(sizeof(*r))`` / ``ringbuf_submit``),
and the record it writes is described in Python by ``layout`` so that it
can be decoded.  Around the text moduled defines, for this source only:

* ``RECORD``: ``struct`` of the declared layout (members ``f_<name>``);
* ``LOST()``: count one record lost (call it when a reservation fails);
* ``FILL_HEADER(r)``: with ``header=True``, fill the built-in fields
  (``ktime_ns``, ``cgroup_id``, ``pid``, ``tgid``, ``uid``, ``comm``) that
  the layout then starts with.

Functions are attached per ``attach``: a sequence of
``("tracepoint", "category:name", "fn")``, ``("uprobe" | "uretprobe",
binary, symbol, "fn")``, ``("kprobe" | "kretprobe", function, "fn")`` or
``("raw_tracepoint", name, "fn")``; functions named by bcc's conventions
(``TRACEPOINT_PROBE``, ``RAW_TRACEPOINT_PROBE``) attach themselves.  Every
source of a module shares one C program, so function names must differ
between the module's Bpf sources.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

from ..errors import InvalidArgument
from . import doctor, hooks, tracefs
from .probe_base import DEFAULT_RING_PAGES, ProbeSource
from .record import Layout, parse_type

__all__ = ["Bpf"]

_IDENT = re.compile(r"^[A-Za-z_]\w*$")
#: Prefix of the names moduled gives its own functions, maps and records.
RESERVED = "md_"
#: A function or map definition with a reserved name.
_RESERVED_DEF = re.compile(r"\b(md_\w+)\s*\([^;{()]*\)\s*\{|\bBPF_\w+\(\s*(md_\w+)")
_KINDS = {
    "tracepoint": 2,
    "raw_tracepoint": 2,
    "uprobe": 3,
    "uretprobe": 3,
    "kprobe": 2,
    "kretprobe": 2,
}


class Bpf(ProbeSource):
    """A source running custom BPF C that writes records to ``events``.

    Args:
        text: the C program.
        events: the name the text uses for its ring buffer.
        attach: where to attach functions (see the module docstring).
        layout: the record, as ``((name, type), ...)`` pairs.
        header: the record starts with the built-in fields (filled by
            ``FILL_HEADER(r)``).
        name: a name for the probe (``ProbeEvent.probe`` is ``bpf:<name>``).
        ring_pages: the ring buffer's size in pages (a power of two).
    """

    def __init__(
        self,
        text: str,
        events: str = "events",
        attach: Sequence[tuple[str, ...]] = (),
        layout: Sequence[tuple[str, str]] = (),
        *,
        header: bool = False,
        name: str = "custom",
        ring_pages: int = DEFAULT_RING_PAGES,
    ) -> None:
        super().__init__(ring_pages=ring_pages)
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument("bpf: text must be the C program")
        if not isinstance(events, str) or not _IDENT.match(events):
            raise InvalidArgument(f"bpf: events {events!r} must be a C identifier")
        if events.startswith(RESERVED) and not self._internal:
            raise InvalidArgument(
                f"bpf: events {events!r}: names starting with {RESERVED!r} are "
                "moduled's own; choose another"
            )
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"bpf: name {name!r} must be a non-empty string")
        if isinstance(layout, str) or not layout:
            raise InvalidArgument(
                f"bpf {name}: layout must declare the record, e.g. "
                "(('pid', 'u32'), ('comm', 'char[16]'))"
            )
        fields = []
        for item in layout:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise InvalidArgument(
                    f"bpf {name}: layout item {item!r} must be (name, type)"
                )
            fields.append(parse_type(*item))
        self._layout = Layout(fields, header=header)
        if isinstance(attach, str):
            raise InvalidArgument(f"bpf {name}: attach must be a sequence of tuples")
        self.attach = tuple(_check_attach(name, a, self._internal) for a in attach)
        taken = None if self._internal else _RESERVED_DEF.search(text)
        if taken:
            what = taken.group(1) or taken.group(2)
            raise InvalidArgument(
                f"bpf {name}: the text defines {what!r}; names starting with "
                f"{RESERVED!r} are moduled's own, rename it"
            )
        self.text = text
        self.events_name = events
        self.header = header
        self.probe_name = name

    #: Tracepoints of ``attach`` that may be missing (see stock probes).
    _optional: frozenset[str] = frozenset()
    #: moduled's own programs (stock probes) may use the reserved names.
    _internal: ClassVar[bool] = False

    @property
    def key(self) -> Hashable:
        return f"bpf:{self.probe_name}"

    def _prepare(self) -> None:
        module = self._module
        others = module.sources(self.type) if module is not None else []
        owner = module.name if module is not None else "?"
        for other in others:
            if (
                isinstance(other, Bpf)
                and other is not self
                and other.events_name == self.events_name
            ):
                raise InvalidArgument(
                    f"{self.name}: module {owner} already has a Bpf source writing "
                    f"to {self.events_name!r}; give each its own events name"
                )
        for a in self.attach:
            if a[0] == "tracepoint" and a[1] not in self._optional:
                # NotFound naming the tracepoint, now rather than at attach.
                tracefs.read_format(*a[1].split(":"))
        if any(a[0].startswith("k") for a in self.attach):
            doctor.require(self.name, ("kprobes",))
        if any(a[0].startswith("u") for a in self.attach):
            doctor.require(self.name, ("uprobes",))

    def _own_text(self) -> str:
        return self.text

    def _c_code(self, slot: int) -> str:
        assert self._layout is not None
        ev = self.events_name
        return (
            self._layout.c_struct(f"md_rec_{slot}")
            + f"BPF_RINGBUF_OUTPUT({ev}, {self._ring_pages});\n"
            f"#define RECORD struct md_rec_{slot}\n"
            f"#define LOST() md_lost_inc({slot})\n"
            "#define FILL_HEADER(r) MD_HEADER(r, bpf_get_current_pid_tgid())\n"
            f"{self.text}\n"
            "#undef RECORD\n#undef LOST\n#undef FILL_HEADER\n"
        )

    def _ring_name(self, slot: int) -> str:
        return self.events_name

    def _attach_functions(self, bpf: Any) -> None:
        for a in self.attach:
            kind, fn = a[0], a[-1]
            if kind == "tracepoint":
                self._keep(hooks.attach_tracepoint(bpf, a[1], fn))
            elif kind == "raw_tracepoint":
                self._keep(hooks.attach_raw_tracepoint(bpf, a[1], fn))
            elif kind in ("uprobe", "uretprobe"):
                ret = kind == "uretprobe"
                self._keep(hooks.attach_uprobe(bpf, a[1], a[2], fn, ret=ret))
            else:
                ret = kind == "kretprobe"
                self._keep(hooks.attach_kprobe(bpf, a[1], fn, ret=ret))


def _check_attach(name: str, spec: Any, internal: bool) -> tuple[str, ...]:
    if not isinstance(spec, tuple) or not spec or spec[0] not in _KINDS:
        raise InvalidArgument(
            f"bpf {name}: attach {spec!r}: expected (kind, ..., function) with kind "
            f"one of {', '.join(_KINDS)}"
        )
    if len(spec) != _KINDS[spec[0]] + 1 or not all(isinstance(s, str) for s in spec):
        raise InvalidArgument(
            f"bpf {name}: attach {spec!r}: {spec[0]} takes "
            f"{_KINDS[spec[0]]} strings after the kind"
        )
    if not _IDENT.match(spec[-1]):
        raise InvalidArgument(f"bpf {name}: attach {spec!r}: bad function name")
    if spec[-1].startswith(RESERVED) and not internal:
        raise InvalidArgument(
            f"bpf {name}: attach {spec!r}: function names starting with "
            f"{RESERVED!r} are moduled's own; rename it"
        )
    if spec[0] == "tracepoint" and not re.fullmatch(r"\w+:\w+", spec[1]):
        raise InvalidArgument(
            f"bpf {name}: attach {spec!r}: expected 'category:name' as listed in "
            "/sys/kernel/tracing/available_events"
        )
    return spec
