"""Stock probes: named probe definitions shipped in ``probes/stock.toml``.

``stock("exec")`` returns a new, unregistered source; ``STOCK`` lists the
names.  The definitions live in the repository's top-level ``probes/``
directory, shipped in the wheel as ``moduled/_data/probes``.
"""

from __future__ import annotations

import functools
import os
import tomllib
from typing import Any

from ..errors import NotFound

__all__ = ["STOCK", "probes_dir", "stock"]


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


def stock(name: str, **kwargs: Any) -> Any:
    """Return a new source for stock probe ``name`` (e.g. ``"exec"``).

    Keyword arguments (``ring_pages``) are passed to the source.
    """
    from .tracepoint import Tracepoint

    spec = _definitions().get(name)
    if spec is None:
        raise NotFound(
            f"stock probe {name!r}: unknown; choose one of {', '.join(STOCK)}"
        )
    category, tp = spec["tracepoint"].split(":")
    return Tracepoint(category, tp, filter=spec.get("filter"), **kwargs)


try:
    STOCK: list[str] = sorted(_definitions())
except (OSError, NotFound):
    STOCK = []
