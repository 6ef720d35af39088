"""The fields of one probe record: a read-only mapping over the decoded tuple.

Building a ``dict`` per record costs more than everything else on the way
from the ring buffer to ``on_evt``, so a record stays the tuple that
``struct`` unpacked, and its class carries the one name-to-index table its
probe's records share.  The tuple is made by C code (``map(cls, tuples)``)
without a Python call per record; strings and arrays are converted only
when a field is read, and each read converts again (keep the value if you
read it often).

A :class:`ProbeFields` behaves as a ``Mapping[str, Any]``: ``f["tgid"]``,
``f.get("comm")``, ``"filename" in f``, iteration over the names, ``==``
with a dict.  It is not a dict: ``dict(f)`` or ``f._asdict()`` copy it, and
that is also how it is pickled (by the recorder) and turned into JSON.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, ClassVar

__all__ = ["Derive", "ProbeFields", "fields_class"]

_tget = tuple.__getitem__
_tlen = tuple.__len__


class ProbeFields(tuple):  # type: ignore[type-arg]
    """Decoded record fields by name (read-only; see the module docstring).

    Subclasses made by :func:`fields_class` set the tables below.
    """

    __slots__ = ()

    #: name -> tuple index, for values that need no conversion.
    _plain: ClassVar[dict[str, int]] = {}
    #: name -> converter of the whole tuple, for strings and arrays.
    _special: ClassVar[dict[str, Callable[[tuple[Any, ...]], Any]]] = {}
    #: every name, in record order.
    _names: ClassVar[tuple[str, ...]] = ()

    def __getitem__(self, key: str) -> Any:  # type: ignore[override]
        i = self._plain.get(key)
        if i is not None:
            return _tget(self, i)
        conv = self._special.get(key)
        if conv is None:
            raise KeyError(key)
        return conv(self)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of field ``key``, or ``default`` if there is none."""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self._plain or key in self._special

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def keys(self) -> KeysView[str]:
        return KeysView(self)  # type: ignore[arg-type]

    def values(self) -> ValuesView[Any]:
        return ValuesView(self)  # type: ignore[arg-type]

    def items(self) -> ItemsView[str, Any]:
        return ItemsView(self)  # type: ignore[arg-type]

    def _asdict(self) -> dict[str, Any]:
        """A plain dict copy (JSON, the recorder, comparisons)."""
        return {k: self[k] for k in self._names}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ProbeFields):
            return self._asdict() == other._asdict()
        if isinstance(other, Mapping):
            return self._asdict() == dict(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._asdict(),))

    def __repr__(self) -> str:
        return f"ProbeFields({self._asdict()!r})"


Mapping.register(ProbeFields)


def _str_at(i: int) -> Callable[[tuple[Any, ...]], str]:
    def conv(t: tuple[Any, ...]) -> str:
        return str(_tget(t, i).split(b"\0", 1)[0], "utf-8", "replace")

    return conv


def _list_at(start: int, count: int) -> Callable[[tuple[Any, ...]], list[Any]]:
    end = start + count

    def conv(t: tuple[Any, ...]) -> list[Any]:
        return list(_tget(t, slice(start, end)))

    return conv


#: A derived field: ``convert(raw_value, fields) -> value``.
Derive = Callable[[Any, "ProbeFields"], Any]


def _derived_at(i: int, fn: Derive) -> Callable[[tuple[Any, ...]], Any]:
    def conv(t: tuple[Any, ...]) -> Any:
        return fn(_tget(t, i), t)  # type: ignore[arg-type]

    return conv


def fields_class(
    probe: str,
    columns: list[tuple[str, str, int]],
    derived: Mapping[str, Derive] | None = None,
) -> type[ProbeFields]:
    """Make the :class:`ProbeFields` class of one record layout.

    Args:
        probe: the probe's name (for the class's repr only).
        columns: ``(name, kind, count)`` in record order, where kind is
            ``int``, ``bytes``, ``str`` or ``list`` and a ``list`` takes
            ``count`` tuple items.
        derived: fields (``int`` or ``bytes`` ones) whose value is computed
            on access from the raw value and the other fields (an address
            from its bytes and the family, argv from a blob and argc).
    """
    plain: dict[str, int] = {}
    special: dict[str, Callable[[tuple[Any, ...]], Any]] = {}
    i = 0
    for name, kind, count in columns:
        if kind == "str":
            special[name] = _str_at(i)
        elif kind == "list":
            special[name] = _list_at(i, count)
            i += count
            continue
        elif derived and name in derived:
            special[name] = _derived_at(i, derived[name])
        else:
            plain[name] = i
        i += 1
    names = tuple(name for name, _, _ in columns)
    return type(
        "ProbeFields",
        (ProbeFields,),
        {
            "__slots__": (),
            "__qualname__": f"ProbeFields[{probe}]",
            "_plain": plain,
            "_special": special,
            "_names": names,
        },
    )
