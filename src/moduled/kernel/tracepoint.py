"""Tracepoint sources: declarative probes built from tracefs format files."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from ..errors import InvalidArgument
from . import filter as flt
from . import hooks, tracefs
from .codegen import ProbeCode, Value, c_int, filter_fields, probe_function
from .probe_base import BUILTIN_NAMES, DEFAULT_RING_PAGES, ProbeSource
from .record import Layout, parse_type

__all__ = ["Tracepoint"]

# -- tracepoints ---------------------------------------------------------------


def _tp_value(tf: tracefs.TpField, name: str) -> Value | None:
    """How to store a tracepoint field in the record, or None (unsupported)."""
    at = f"(const char *)ctx + {tf.offset}"
    if tf.data_loc:
        if tf.kind != "str":
            return None
        lf = parse_type(name, f"char[{tracefs.DATA_LOC_MAX}]")
        store = (
            f"{{ u32 md_loc = *(const u32 *)({at}); r->f_{name}[0] = 0; "
            f"bpf_probe_read_kernel_str(r->f_{name}, sizeof(r->f_{name}), "
            "(const char *)ctx + (md_loc & 0xffff)); }"
        )
        return Value(lf, store)
    if tf.kind == "int":
        if tf.size not in (1, 2, 4, 8):
            return None
        ctype = c_int(tf.size, tf.signed)
        lf = parse_type(name, ctype)
        load = f"*(const {ctype} *)({at})"
        ff = flt.FilterField("int", tf.size, tf.signed)
        return Value(lf, f"r->f_{name} = {load};", load, ff)
    if tf.kind == "str":
        lf = parse_type(name, f"char[{tf.count}]")
    else:
        elem = c_int(tf.elem_size, False) if tf.elem_size in (1, 2, 4, 8) else None
        if elem is None:
            return None
        lf = parse_type(name, f"{elem}[{tf.count}]")
    store = f"bpf_probe_read_kernel(r->f_{name}, {tf.size}, {at});"
    return Value(lf, store)


def _out_name(tf: tracefs.TpField) -> str:
    return f"tp_{tf.name}" if tf.name in BUILTIN_NAMES else tf.name


class Tracepoint(ProbeSource):
    """A kernel tracepoint, with the fields its format file declares.

    Args:
        category: e.g. ``"sched"``.
        name: e.g. ``"sched_process_exec"``.
        fields: names of the fields to deliver (all of them when None).
        filter: an expression of :mod:`moduled.kernel.filter`, run in the
            kernel, e.g. ``"tgid == 1234 && comm != 'bash'"``.
        ring_pages: the ring buffer's size in pages (a power of two).

    Raises:
        InvalidArgument: bad names, fields or filter syntax.
        NotFound (at register): no such tracepoint or field.
        SourceUnavailable (at register): no privileges, tracefs, bcc or
            headers.
    """

    def __init__(
        self,
        category: str,
        name: str,
        fields: Sequence[str] | None = None,
        filter: str | None = None,
        *,
        ring_pages: int = DEFAULT_RING_PAGES,
    ) -> None:
        super().__init__(ring_pages=ring_pages)
        for what, value in (("category", category), ("name", name)):
            if not isinstance(value, str) or not value.isidentifier():
                raise InvalidArgument(
                    f"tracepoint {what} {value!r}: expected a name as listed in "
                    "/sys/kernel/tracing/available_events"
                )
        if fields is not None:
            if isinstance(fields, str) or not all(isinstance(f, str) for f in fields):
                raise InvalidArgument(
                    f"tracepoint {category}:{name}: fields must be a list of names"
                )
            fields = tuple(fields)
        if filter is not None and not isinstance(filter, str):
            raise InvalidArgument(
                f"tracepoint {category}:{name}: filter must be a string expression"
            )
        self.category = category
        self.tp_name = name
        self.fields = fields
        self.filter = filter
        self._values: list[Value] = []
        self._tree: flt.Node | None = None

    @property
    def key(self) -> Hashable:
        return f"tracepoint:{self.category}:{self.tp_name}" + (
            f"[{self.filter}]" if self.filter else ""
        )

    @property
    def name(self) -> str:
        return f"tracepoint:{self.category}:{self.tp_name}"

    def _prepare(self) -> None:
        fmt = tracefs.read_format(self.category, self.tp_name)
        wanted = fmt.fields
        if self.fields is not None:
            wanted = tuple(fmt.field(n) for n in self.fields)
        values = []
        for tf in wanted:
            v = _tp_value(tf, _out_name(tf))
            if v is None:
                if self.fields is not None:
                    raise InvalidArgument(
                        f"{self.name}: field {tf.name!r} ({tf.decl}) has a type "
                        "probes cannot copy; leave it out or use a Bpf source"
                    )
                continue
            values.append(v)
        self._values = values
        self._layout = Layout(v.field for v in values)
        if self.filter is not None:
            # Filters may also name fields that are not delivered.
            every = [v for tf in fmt.fields if (v := _tp_value(tf, _out_name(tf)))]
            avail = filter_fields(every)
            self._tree = flt.parse(self.filter, avail)
            self._filter_values = every

    def _c_code(self, slot: int) -> str:
        assert self._layout is not None
        values = list(self._values)
        if self._tree is not None:
            names = {v.field.name for v in values}
            values += [
                Value(v.field, "", v.load, v.filter_field)
                for v in self._filter_values
                if v.field.name not in names
            ]
        code = ProbeCode(slot, self._layout, values, self._ring_pages)
        code.filter_tree = self._tree
        return probe_function(code)

    def _attach_functions(self, bpf: Any) -> None:
        tp = f"{self.category}:{self.tp_name}"
        self._keep(hooks.attach_tracepoint(bpf, tp, f"md_probe_{self._slot}"))
