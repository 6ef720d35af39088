"""Log output for the daemon: journal-friendly under systemd, plain otherwise.

systemd connects a service's stderr to the journal and says so in
``$JOURNAL_STREAM`` (``DEVICE:INODE`` of that stream).  The journal reads a
``<N>`` prefix on each line as the syslog priority of that line (the
``sd-daemon.h`` convention), so under systemd each record is written as
``<3>moduled.daemon.plugins: exec_logger: import failed ...`` and
``journalctl -p err`` finds it.  The journal stamps time and pid itself.

Anywhere else records go to stderr as ``time LEVEL logger: message``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from ..log import set_loglevel

__all__ = ["JournalFormatter", "setup_logging", "under_journal"]

#: logging level -> syslog priority (sd-daemon.h SD_ERR, SD_WARNING, ...).
_PRIORITY = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)


def _priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """Prefix every line of a record with its syslog priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines())


def under_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal stream systemd gave us."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def setup_logging(level: str | int = "info", stream: TextIO | None = None) -> None:
    """Send the ``moduled`` logger tree to ``stream`` (stderr) at ``level``.

    Raises:
        InvalidArgument: unknown level name.
    """
    stream = sys.stderr if stream is None else stream
    set_loglevel(level)
    root = logging.getLogger("moduled")
    for handler in list(root.handlers):
        if getattr(handler, "_moduled_daemon", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler._moduled_daemon = True  # type: ignore[attr-defined]
    if under_journal(stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root.addHandler(handler)
