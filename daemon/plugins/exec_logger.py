"""Exec logger: one line and one message for every program started.

Source: the process connector (``md.ProcEvents(kinds=("exec",))``), which
needs CAP_NET_ADMIN; without it the plugin fails alone, saying so.

Publishes on ``exec`` (so ``modulectl tail exec`` shows them)::

    {"pid": 1234, "comm": "ls", "exe": "/usr/bin/ls", "argv": ["ls", "-l"]}

``exe`` and ``argv`` are read from ``/proc/<pid>`` when the event is
handled; a program that has already exited by then is reported with its
``comm`` only (``exe`` null, ``argv`` empty).  The write_exec plugin shows
how to get the file name regardless, from an eBPF tracepoint.

Settings (``[plugins.exec_logger]`` in moduled.toml, seen as
``self.config``):

* ``ignore``: list of ``comm`` names not to report (default none);
* ``log``: also log each exec at INFO (default true).
"""

from __future__ import annotations

import os

import moduled as md

_ARGV_MAX = 4096


def process_info(pid: int) -> tuple[str | None, list[str]]:
    """The executable and argv of ``pid``, best effort (it may be gone)."""
    try:
        exe: str | None = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(_ARGV_MAX)
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    except OSError:
        argv = []
    return exe, argv


class ExecLogger(md.Module):
    """Report every exec."""

    name = "exec_logger"

    def on_start(self) -> None:
        self._ignore = frozenset(self.config.get("ignore", ()))
        self._verbose = bool(self.config.get("log", True))
        self.register(md.ProcEvents(kinds=("exec",)))

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            if ev.type is not md.SrcType.PROC or ev.data.kind != "exec":
                continue
            pe = ev.data
            if pe.comm in self._ignore:
                continue
            exe, argv = process_info(pe.tgid)
            if self._verbose:
                self.log.info(
                    "exec: pid %d %s %s", pe.tgid, exe or pe.comm or "?", argv
                )
            self.publish(
                "exec", {"pid": pe.tgid, "comm": pe.comm, "exe": exe, "argv": argv}
            )
