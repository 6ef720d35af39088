"""Logging configuration from the environment.

The library only adds a ``NullHandler`` to the ``moduled`` logger; output is
the application's business.  The environment may still ask for it:

* ``MODULED_LOG``: level of the whole ``moduled`` tree (default ``warning``).
* ``MODULED_LOG_CORE``, ``MODULED_LOG_SOURCES``, ``MODULED_LOG_KERNEL``,
  ``MODULED_LOG_DAEMON``: level of one area.
* ``MODULED_LOG_OUTPUT``: a file that receives the ``moduled`` records.

Module loggers are named ``moduled.<context>.<module>``; they follow
``MODULED_LOG``.
"""

from __future__ import annotations

import logging
import os

from .errors import InvalidArgument

__all__ = ["AREAS", "set_loglevel"]

AREAS = ("core", "sources", "kernel", "daemon")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

root = logging.getLogger("moduled")


def _level(level: int | str) -> int:
    if isinstance(level, bool):
        raise InvalidArgument(f"log level {level!r}: use a name such as 'info'")
    if isinstance(level, int):
        return level
    if isinstance(level, str) and level.strip().lower() in _LEVELS:
        return _LEVELS[level.strip().lower()]
    names = ", ".join(sorted(_LEVELS))
    raise InvalidArgument(f"log level {level!r}: expected one of {names}")


def set_loglevel(level: int | str, area: str | None = None) -> None:
    """Set the level of all moduled logging, or of one area.

    Args:
        level: a ``logging`` level or its name (``"debug"``, ``"info"``...).
        area: None for everything, or one of ``core``, ``sources``,
            ``kernel``, ``daemon``.

    Raises:
        InvalidArgument: unknown level or area.
    """
    lvl = _level(level)
    if area is None:
        root.setLevel(lvl)
        return
    if area not in AREAS:
        raise InvalidArgument(f"log area {area!r}: expected one of {', '.join(AREAS)}")
    logging.getLogger(f"moduled.{area}").setLevel(lvl)


def _configure_from_env() -> None:
    root.addHandler(logging.NullHandler())
    env = os.environ
    try:
        set_loglevel(env.get("MODULED_LOG", "warning"))
        for area in AREAS:
            value = env.get(f"MODULED_LOG_{area.upper()}")
            if value:
                set_loglevel(value, area)
    except InvalidArgument as exc:
        root.setLevel(logging.WARNING)
        root.warning("environment: %s; using 'warning'", exc)
    output = env.get("MODULED_LOG_OUTPUT")
    if output:
        handler = logging.FileHandler(output)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
