"""Logging configuration from the environment.

The library only adds a ``NullHandler`` to the ``moduled`` logger; output is
the application's business.  The environment may still ask for it:

* ``MODULED_LOG``: level of the whole ``moduled`` tree (default ``warning``).
* ``MODULED_LOG_CORE``, ``MODULED_LOG_SOURCES``, ``MODULED_LOG_KERNEL``,
  ``MODULED_LOG_DAEMON``: level of one area.
* ``MODULED_LOG_OUTPUT``: where the ``moduled`` records go: a file, or
  ``stderr``.  Without it the levels apply to whatever handlers the
  application configured (``logging.basicConfig`` for instance).

Module loggers are named ``moduled.<context>.<module>``; they follow
``MODULED_LOG``.  A bad value in these variables is reported with a
``RuntimeWarning`` and otherwise ignored: importing moduled never fails
because of its environment.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

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
    for var in ("MODULED_LOG", *(f"MODULED_LOG_{a.upper()}" for a in AREAS)):
        value = env.get(var)
        if not value:
            continue
        area = None if var == "MODULED_LOG" else var.rsplit("_", 1)[1].lower()
        try:
            set_loglevel(value, area)
        except InvalidArgument as exc:
            warnings.warn(f"{var}: {exc}; ignored", RuntimeWarning, stacklevel=2)
    if root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    output = env.get("MODULED_LOG_OUTPUT")
    if not output:
        return
    try:
        handler: logging.Handler = (
            logging.StreamHandler(sys.stderr)
            if output == "stderr"
            else logging.FileHandler(output)
        )
    except OSError as exc:
        warnings.warn(
            f"MODULED_LOG_OUTPUT: cannot open {output!r} ({exc.strerror}); "
            "logging to it is off",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
