"""Record layouts: one declaration gives the C struct and the Python decoder.

A probe's record is a C struct written by the BPF program into the ring
buffer and read back in Python with a precompiled :class:`struct.Struct`.
Both sides come from the same :class:`Layout`, laid out with C's natural
alignment, and the generated C carries a ``_Static_assert`` on the size so
that the two can never drift apart silently.

Type names (``args=`` of uprobes and kprobes, ``layout=`` of custom Bpf):

=====================  =========================================
``u8`` ... ``u64``,    unsigned / signed integers; also ``int``,
``s8`` ... ``s64``     ``long``, ``unsigned int``, ``size_t``,
                       ``pid_t``, ``uid_t``, ``bool``
``void*`` / ``ptr``    a pointer, decoded as an int
``char*``              a string read from the pointer (probe args)
``char[N]``            a fixed char array, decoded as ``str``
``u8[N]``              a byte array, decoded as ``bytes``
``u32[N]`` (any int)   an array, decoded as a ``list``
=====================  =========================================
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple, cast

from ..errors import InvalidArgument
from .fields import Derive, ProbeFields, fields_class

__all__ = [
    "HEADER",
    "Decoder",
    "Layout",
    "LayoutField",
    "ProbeEvent",
    "ProbeFields",
    "parse_type",
]

#: Bytes kept from a string argument or __data_loc string (with the NUL).
STR_MAX = 256


class ProbeEvent(NamedTuple):
    """A record from an eBPF probe.

    ``probe`` names the probe (``tracepoint:sched:sched_process_exec``,
    ``uprobe:/lib/x86_64-linux-gnu/libc.so.6:getpid``, ...); ``fields`` maps
    field names to decoded values, strings as ``str``.  Every probe adds
    ``pid`` (thread id), ``tgid`` (process id), ``uid``, ``comm``,
    ``cgroup_id`` and ``ktime_ns`` (CLOCK_MONOTONIC); return probes add
    ``retval``.  Records from the kernel carry a :class:`ProbeFields`
    (a read-only mapping decoded on access); any mapping will do when you
    build one yourself.
    """

    probe: str
    fields: Mapping[str, Any]


# name -> (C type, struct code, size, signed)
_SCALARS: dict[str, tuple[str, str, int, bool]] = {
    "u8": ("u8", "B", 1, False),
    "u16": ("u16", "H", 2, False),
    "u32": ("u32", "I", 4, False),
    "u64": ("u64", "Q", 8, False),
    "s8": ("s8", "b", 1, True),
    "s16": ("s16", "h", 2, True),
    "s32": ("s32", "i", 4, True),
    "s64": ("s64", "q", 8, True),
}
_ALIASES = {
    "int": "s32",
    "unsigned int": "u32",
    "uint": "u32",
    "long": "s64",
    "unsigned long": "u64",
    "ulong": "u64",
    "size_t": "u64",
    "ssize_t": "s64",
    "pid_t": "s32",
    "uid_t": "u32",
    "bool": "u8",
    "char": "s8",
    "short": "s16",
    "unsigned short": "u16",
    "void*": "u64",
    "ptr": "u64",
}
_ARRAY_RE = re.compile(r"^(?P<elem>[a-z0-9_ ]+?)\s*\[\s*(?P<count>\d+)\s*\]$")
_IDENT_RE = re.compile(r"^[A-Za-z_]\w{0,63}$")


@dataclass(frozen=True, slots=True)
class LayoutField:
    """One member of a record.

    ``kind`` is ``int``, ``str`` (char array), ``bytes`` or ``list``;
    ``string_arg`` marks a ``char*`` argument stored as a char array.
    """

    name: str
    ctype: str
    code: str
    size: int
    count: int
    signed: bool
    kind: str
    string_arg: bool = False

    @property
    def total(self) -> int:
        return self.size * self.count

    def c_decl(self) -> str:
        """The C member declaration (names are prefixed to dodge macros)."""
        if self.count > 1 or self.kind != "int":
            return f"{self.ctype} f_{self.name}[{self.count}];"
        return f"{self.ctype} f_{self.name};"


def parse_type(name: str, type_name: str, *, allow_string: bool = False) -> LayoutField:
    """Turn a declared type name into a :class:`LayoutField`.

    Raises:
        InvalidArgument: unknown type, bad name, or ``char*`` where no
            pointer can be read.
    """
    if not isinstance(name, str) or not _IDENT_RE.match(name):
        raise InvalidArgument(
            f"field name {name!r}: expected an identifier (letters, digits, _)"
        )
    if not isinstance(type_name, str):
        raise InvalidArgument(f"field {name}: type must be a string like 'u32'")
    t = " ".join(type_name.replace("*", " * ").split()).replace(" *", "*")
    if t in ("char*", "const char*"):
        if not allow_string:
            raise InvalidArgument(
                f"field {name}: 'char*' only applies to probe arguments; "
                "use 'char[N]' in a record layout"
            )
        return LayoutField(name, "char", "s", 1, STR_MAX, False, "str", True)
    if t.endswith("*"):
        t = "void*"
    t = _ALIASES.get(t, t)
    if t in _SCALARS:
        ctype, code, size, signed = _SCALARS[t]
        return LayoutField(name, ctype, code, size, 1, signed, "int")
    m = _ARRAY_RE.match(t)
    if m:
        elem, count = m.group("elem").strip(), int(m.group("count"))
        if not 0 < count <= 4096:
            raise InvalidArgument(f"field {name}: array size {count} not in 1..4096")
        if elem == "char":
            return LayoutField(name, "char", "s", 1, count, False, "str")
        elem = _ALIASES.get(elem, elem)
        if elem in _SCALARS:
            ctype, code, size, signed = _SCALARS[elem]
            kind = "bytes" if size == 1 else "list"
            return LayoutField(name, ctype, code, size, count, signed, kind)
    known = ", ".join([*_SCALARS, *_ALIASES, "char*", "char[N]", "u8[N]"])
    raise InvalidArgument(
        f"field {name}: unknown type {type_name!r}; use one of {known}"
    )


#: The fields every probe record starts with, in this order.
HEADER: tuple[LayoutField, ...] = (
    parse_type("ktime_ns", "u64"),
    parse_type("cgroup_id", "u64"),
    parse_type("pid", "u32"),
    parse_type("tgid", "u32"),
    parse_type("uid", "u32"),
    parse_type("comm", "char[16]"),
)


class Layout:
    """The record of one probe: header fields, then the probe's own.

    Attributes:
        fields: every field in record order.
        size: ``sizeof`` the C struct.
        struct: the compiled :class:`struct.Struct` reading one record.
    """

    def __init__(self, fields: Iterable[LayoutField], *, header: bool = True) -> None:
        own = list(fields)
        self.fields: tuple[LayoutField, ...] = (*(HEADER if header else ()), *own)
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise InvalidArgument(
                    f"field {f.name}: declared twice (or shadows a built-in "
                    "field: ktime_ns, cgroup_id, pid, tgid, uid, comm, retval)"
                )
            seen.add(f.name)
        if not self.fields:
            raise InvalidArgument("record layout: declare at least one field")
        self.names = tuple(f.name for f in self.fields)
        fmt, offset, align_max = ["="], 0, 1
        for f in self.fields:
            pad = -offset % f.size
            if pad:
                fmt.append(f"{pad}x")
            offset += pad
            if f.kind in ("str", "bytes"):
                fmt.append(f"{f.count}s")
            else:
                fmt.append(f"{f.count}{f.code}" if f.count > 1 else f.code)
            offset += f.total
            align_max = max(align_max, f.size)
        self.size = offset + (-offset % align_max)
        self.struct = struct.Struct("".join(fmt))

    def c_struct(self, tag: str) -> str:
        """The C definition of ``struct <tag>`` with a size check."""
        members = "\n".join(f"    {f.c_decl()}" for f in self.fields)
        return (
            f"struct {tag} {{\n{members}\n}};\n"
            f"_Static_assert(sizeof(struct {tag}) == {self.size}, "
            f'"moduled: record layout of {tag}");\n'
        )

    def decoder(
        self, probe: str, derived: Mapping[str, Derive] | None = None
    ) -> Decoder:
        """Return the :class:`Decoder` of this layout's records for ``probe``."""
        return Decoder(self, probe, derived)


_tuple_new = tuple.__new__


class Decoder:
    """Turn ring-buffer bytes of one layout into :class:`ProbeEvent` records.

    Attributes:
        length: the record length a ring-buffer header carries.
        stride: the distance between two records in the ring (header
            included, padded to 8 bytes).
    """

    def __init__(
        self,
        layout: Layout,
        probe: str,
        derived: Mapping[str, Derive] | None = None,
    ) -> None:
        self.probe = probe
        self.length = layout.size
        self.stride = (8 + layout.size + 7) & ~7
        body = layout.struct.format.lstrip("=@<>!")
        tail = self.stride - 8 - layout.struct.size
        self._entry = struct.Struct(f"=8x{body}{tail}x" if tail else f"=8x{body}")
        assert self._entry.size == self.stride
        self._record = layout.struct
        self.fields_class = fields_class(
            probe, [(f.name, f.kind, f.count) for f in layout.fields], derived
        )

    def many(self, entries: Any) -> list[ProbeEvent]:
        """Decode ``entries``: a buffer of whole ring entries (header included)
        all of this layout, back to back."""
        return list(
            map(
                _tuple_new,
                repeat(ProbeEvent),
                zip(
                    repeat(self.probe),
                    map(self.fields_class, self._entry.iter_unpack(entries)),
                ),
            )
        )

    def one(self, buf: Any, offset: int) -> ProbeEvent:
        """Decode the record at ``offset`` (past its ring-buffer header)."""
        fields = self.fields_class(self._record.unpack_from(buf, offset))
        # A registered Mapping (see fields.py), which mypy cannot see.
        return ProbeEvent(self.probe, cast("Mapping[str, Any]", fields))
