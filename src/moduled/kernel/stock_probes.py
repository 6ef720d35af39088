"""Stock probes: named probe definitions shipped in ``probes/``.

``stock("exec")`` returns a new, unregistered source; ``STOCK`` lists the
names.  ``probes/stock.toml`` defines each one either as a declarative
:class:`Tracepoint` or as a custom BPF program (a ``.bpf.c`` file next to
it) with its record layout and hooks; the directory is shipped in the wheel
as ``moduled/_data/probes``.

The C of a stock program reads tracepoint records only at offsets taken
from tracefs when the probe is registered (``TP_OFF(category, name,
field)``), never from kernel headers, so the stand-in headers of this
project's CI machine cannot misplace a field.  Hooks a kernel may lack
(``openat2``, ``open``, ``execveat``) are listed as optional: where the
tracepoint is missing, ``MD_HAVE(category, name)`` is 0 and the hook is
left out.

Some fields are computed when read, from the raw record (see
:data:`DERIVE`): ``argv`` of ``exec`` as a list of strings, addresses of
``tcp_connect`` as strings, ``how`` of ``exit`` and ``call`` of ``open`` as
words.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import tomllib
from collections.abc import Hashable, Mapping
from typing import Any

from ..errors import InvalidArgument, NotFound
from . import tracefs
from .custom import Bpf
from .fields import Derive
from .probe_base import DEFAULT_RING_PAGES, ProbeSource

__all__ = ["DERIVE", "STOCK", "StockProbe", "probes_dir", "stock"]

_TP_OFF = re.compile(r"\bTP_OFF\(\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*\)")
_MD_HAVE = re.compile(r"\bMD_HAVE\(\s*(\w+)\s*,\s*(\w+)\s*\)")

#: Arguments the exec program keeps, and bytes per argument (with the NUL).
EXEC_ARGS, EXEC_ARGLEN = 20, 128


def _argv(raw: bytes, fields: Any) -> list[str]:
    count = min(fields["argc"], EXEC_ARGS)
    return [
        str(
            raw[i * EXEC_ARGLEN : (i + 1) * EXEC_ARGLEN].split(b"\0", 1)[0],
            "utf-8",
            "replace",
        )
        for i in range(count)
    ]


def _ip_address(raw: bytes, fields: Any) -> str:
    if fields["family"] == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    return socket.inet_ntop(socket.AF_INET6, raw[:16])


_EXIT_HOW = {1: "exit", 2: "signal"}
_OPEN_CALL = {1: "openat", 2: "openat2", 3: "open"}

#: Converters the ``derive`` tables of stock.toml may name.
DERIVE: dict[str, Derive] = {
    "argv": _argv,
    "ip_address": _ip_address,
    "exit_how": lambda raw, _f: _EXIT_HOW.get(raw, "unknown"),
    "open_call": lambda raw, _f: _OPEN_CALL.get(raw, "unknown"),
}


def probes_dir() -> str:
    """The stock probe directory: the wheel's data, else the checkout's."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.path.join(here, "..", "_data", "probes"),
        os.path.join(here, "..", "..", "..", "probes"),
    ):
        if os.path.isfile(os.path.join(candidate, "stock.toml")):
            return os.path.normpath(candidate)
    raise NotFound("stock probes: no probes/stock.toml next to the package")


@functools.cache
def _definitions() -> dict[str, dict[str, Any]]:
    with open(os.path.join(probes_dir(), "stock.toml"), "rb") as f:
        return tomllib.load(f)


class StockProbe(Bpf):
    """A stock probe defined by a BPF program in ``probes/``.

    Its records start with the built-in fields (pid, tgid, uid, comm,
    cgroup_id, ktime_ns); ``ProbeEvent.probe`` is ``stock:<name>``.
    """

    _internal = True

    def __init__(self, name: str, spec: Mapping[str, Any], *, ring_pages: int) -> None:
        path = os.path.join(probes_dir(), spec["bpf"])
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise NotFound(f"stock probe {name!r}: cannot read {path}: {exc}") from None
        super().__init__(
            text,
            events=spec["events"],
            attach=[tuple(a) for a in spec["attach"]],
            layout=[tuple(f) for f in spec["layout"]],
            header=True,
            name=name,
            ring_pages=ring_pages,
        )
        self._template = text
        self._optional = frozenset(spec.get("optional", ()))
        derive = spec.get("derive", {})
        unknown = set(derive.values()) - set(DERIVE)
        if unknown:
            raise InvalidArgument(
                f"stock probe {name!r}: unknown derive {sorted(unknown)}; "
                f"use one of {', '.join(DERIVE)}"
            )
        self._derive = {field: DERIVE[fn] for field, fn in derive.items()}

    @property
    def key(self) -> Hashable:
        return f"stock:{self.probe_name}"

    def _prepare(self) -> None:
        super()._prepare()
        formats: dict[str, tracefs.TpFormat | None] = {}

        def fmt(category: str, name: str) -> tracefs.TpFormat | None:
            tp = f"{category}:{name}"
            if tp not in formats:
                try:
                    formats[tp] = tracefs.read_format(category, name)
                except NotFound:
                    if tp not in self._optional:
                        raise
                    formats[tp] = None
            return formats[tp]

        def offset(m: re.Match[str]) -> str:
            f = fmt(m.group(1), m.group(2))
            return "0" if f is None else str(f.field(m.group(3)).offset)

        def have(m: re.Match[str]) -> str:
            return "0" if fmt(m.group(1), m.group(2)) is None else "1"

        text = _MD_HAVE.sub(have, self._template)
        self.text = _TP_OFF.sub(offset, text)
        self.attach = tuple(
            a
            for a in self.attach
            if a[0] != "tracepoint" or fmt(*a[1].split(":", 1)) is not None
        )

    def _derived(self) -> Mapping[str, Derive] | None:
        return self._derive


def stock(name: str, **kwargs: Any) -> ProbeSource:
    """Return a new source for stock probe ``name`` (e.g. ``"exec"``).

    Keyword arguments: ``ring_pages`` (the ring buffer's size in pages).

    Raises:
        NotFound: no such stock probe.
        InvalidArgument: an unknown keyword argument.
    """
    from .tracepoint import Tracepoint

    spec = _definitions().get(name) if isinstance(name, str) else None
    if spec is None:
        raise NotFound(
            f"stock probe {name!r}: unknown; choose one of {', '.join(STOCK)}"
        )
    extra = set(kwargs) - {"ring_pages"}
    if extra:
        raise InvalidArgument(
            f"stock probe {name!r}: unknown arguments {sorted(extra)}; "
            "only ring_pages applies"
        )
    ring_pages = kwargs.get("ring_pages", DEFAULT_RING_PAGES)
    if "bpf" in spec:
        return StockProbe(name, spec, ring_pages=ring_pages)
    category, tp = spec["tracepoint"].split(":")
    return Tracepoint(category, tp, filter=spec.get("filter"), ring_pages=ring_pages)


def describe() -> dict[str, str]:
    """Each stock probe's one-line description, by name."""
    return {name: spec.get("description", "") for name, spec in _definitions().items()}


try:
    STOCK: list[str] = sorted(_definitions())
except (OSError, NotFound):
    STOCK = []
