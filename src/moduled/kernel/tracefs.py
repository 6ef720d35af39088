"""Tracepoint format files under tracefs, parsed into typed fields.

Every tracepoint describes its record in ``events/<category>/<name>/format``::

    field:unsigned short common_type;	offset:0;	size:2;	signed:0;
    field:__data_loc char[] filename;	offset:8;	size:4;	signed:0;
    field:char comm[16];	offset:8;	size:16;	signed:0;

The ``common_*`` fields are the ftrace header and are not offered to probes.
A ``__data_loc`` field is a u32 whose low 16 bits are the offset of the
string in the record and whose high 16 bits its length.  A BPF tracepoint
program may only read the record within its size (the kernel refuses to
attach a program whose context reads reach further, with EACCES), so the
code generator reads every field at the offset given here and nowhere else.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from ..errors import InvalidArgument, NotFound

__all__ = ["TpField", "TpFormat", "find_tracefs", "list_events", "read_format"]

_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_FIELD_RE = re.compile(
    r"^\s*field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*"
    r"size:(?P<size>\d+);\s*signed:(?P<signed>[01]);"
)
_ARRAY_RE = re.compile(r"^(?P<type>.*?)\s*(?P<name>\w+)\s*\[(?P<count>\d*)\]$")
_NAME_RE = re.compile(r"^\w+$")
#: A tracepoint string longer than this is cut (the stack and the record
#: must hold it); the decoded value then has this many bytes at most.
DATA_LOC_MAX = 256


@dataclass(frozen=True, slots=True)
class TpField:
    """One field of a tracepoint record.

    ``kind`` is ``int`` (a scalar, pointers included), ``str`` (a char
    array or a ``__data_loc`` string), ``bytes`` (an array of single bytes
    that are not chars) or ``list`` (an array of wider scalars).
    """

    name: str
    decl: str
    offset: int
    size: int
    signed: bool
    kind: str
    count: int = 1
    data_loc: bool = False

    @property
    def elem_size(self) -> int:
        return self.size // self.count if self.count else self.size


@dataclass(frozen=True, slots=True)
class TpFormat:
    """The parsed format of one tracepoint (without the common fields)."""

    category: str
    name: str
    id: int
    fields: tuple[TpField, ...]

    @property
    def record_size(self) -> int:
        """Bytes of the fixed part of the record (where ctx reads may go)."""
        return max((f.offset + f.size for f in self.fields), default=8)

    def field(self, name: str) -> TpField:
        for f in self.fields:
            if f.name == name:
                return f
        names = ", ".join(f.name for f in self.fields) or "none"
        raise NotFound(
            f"tracepoint {self.category}:{self.name}: no field {name!r}; "
            f"its fields are: {names}"
        )


@functools.cache
def find_tracefs() -> str | None:
    """Return the mounted tracefs directory, or None when there is none."""
    for path in _CANDIDATES:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    return None


def _parse_field(decl: str, offset: int, size: int, signed: bool) -> TpField:
    decl = decl.strip()
    data_loc = decl.startswith("__data_loc ")
    if data_loc:
        decl = decl[len("__data_loc ") :]
    m = _ARRAY_RE.match(decl)
    if data_loc:
        name = m.group("name") if m else decl.split()[-1]
        kind = "str" if "char" in decl else "bytes"
        return TpField(name, decl, offset, size, False, kind, 1, True)
    if m:
        ctype, name = m.group("type"), m.group("name")
        count = int(m.group("count") or 0) or 1
        elem = size // count
        if ctype.endswith("char") and "unsigned" not in ctype:
            kind = "str"
        elif elem == 1:
            kind = "bytes"
        else:
            kind = "list"
        return TpField(name, decl, offset, size, signed, kind, count)
    name = decl.replace("*", " ").split()[-1]
    return TpField(name, decl, offset, size, signed, "int")


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidArgument(
            f"tracepoint {what} {value!r}: expected a name of letters, digits "
            "and underscores as listed in /sys/kernel/tracing/available_events"
        )


@functools.lru_cache(maxsize=256)
def read_format(category: str, name: str) -> TpFormat:
    """Parse the format of tracepoint ``category:name``.

    Raises:
        InvalidArgument: the names are not identifiers.
        NotFound: no such tracepoint (the message says how to list them).
    """
    _check_name("category", category)
    _check_name("name", name)
    root = find_tracefs()
    if root is None:
        raise NotFound(
            f"tracepoint {category}:{name}: tracefs is not mounted; "
            "mount it with `mount -t tracefs tracefs /sys/kernel/tracing`"
        )
    path = os.path.join(root, "events", category, name, "format")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise NotFound(
            f"tracepoint {category}:{name}: no such tracepoint; list them with "
            f"`grep '^{category}:' {root}/available_events`"
        ) from None
    tp_id = 0
    fields: list[TpField] = []
    for line in text.splitlines():
        if line.startswith("ID:"):
            tp_id = int(line.split(":", 1)[1])
            continue
        m = _FIELD_RE.match(line)
        if not m:
            continue
        field = _parse_field(
            m.group("decl"),
            int(m.group("offset")),
            int(m.group("size")),
            m.group("signed") == "1",
        )
        if not field.name.startswith("common_"):
            fields.append(field)
    return TpFormat(category, name, tp_id, tuple(fields))


def list_events(category: str | None = None) -> list[str]:
    """Return ``category:name`` of every tracepoint (of one category)."""
    root = find_tracefs()
    if root is None:
        return []
    with open(os.path.join(root, "available_events"), encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if category is not None:
        names = [n for n in names if n.startswith(category + ":")]
    return sorted(names)
