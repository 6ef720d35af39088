"""Aligned plain-text tables: stable and greppable, one row a line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["cell", "render"]


def cell(value: Any) -> str:
    """One value as table text: ``-`` for nothing, short floats."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return text.replace("\n", " ")


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-align every column to its widest cell; numbers align right."""
    texts = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in texts:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    numeric = [
        bool(rows)
        and all(isinstance(r[i], (int, float)) for r in rows if r[i] is not None)
        and any(r[i] is not None for r in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, text in enumerate(values):
            last = i == len(values) - 1
            if numeric[i]:
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text if last else text.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in texts)])
