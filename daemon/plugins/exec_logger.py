"""Exec logger: one line and one message for every program started.

Source: the stock ``exec`` eBPF probe (``moduled.kernel.stock("exec")``),
which reads the file name and argv in the kernel at execve time, so even a
program that exits at once is reported whole, and failed execs too (with
``result`` the -errno).  Where eBPF is unavailable (no root, no headers,
``ebpf = false``) the plugin falls back to the process connector
(``md.ProcEvents(kinds=("exec",))``, CAP_NET_ADMIN) and reads ``exe`` and
``argv`` from ``/proc/<pid>``: a program that has already exited by then is
reported with its ``comm`` only (``exe`` null, ``argv`` empty).

Publishes on ``exec`` (so ``modulectl tail exec`` shows them)::

    {"pid": 1234, "comm": "ls", "exe": "/usr/bin/ls", "argv": ["ls", "-l"],
     "uid": 0, "result": 0}

``exe`` is the path given to execve with eBPF, the resolved executable with
the process connector; ``uid`` and ``result`` are null with the latter.

Settings (``[plugins.exec_logger]`` in moduled.toml, seen as
``self.config``):

* ``ignore``: list of ``comm`` names not to report (default none);
* ``log``: also log each exec at INFO (default true);
* ``ebpf``: use the eBPF probe when available (default true).
"""

from __future__ import annotations

import os

import moduled as md
from moduled.kernel import stock

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
        if self.config.get("ebpf", True):
            try:
                self.register(stock("exec"))
                return
            except md.SourceUnavailable as exc:
                self.log.warning("exec: %s; using the process connector", exc)
        self.register(md.ProcEvents(kinds=("exec",)))

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            if ev.type is md.SrcType.PROBE:
                f = ev.data.fields
                record = {
                    "pid": f["tgid"],
                    "comm": f["comm"],
                    "exe": f["filename"],
                    "argv": list(f["argv"]),
                    "uid": f["uid"],
                    "result": f["result"],
                }
            elif ev.type is md.SrcType.PROC and ev.data.kind == "exec":
                pe = ev.data
                exe, argv = process_info(pe.tgid)
                record = {
                    "pid": pe.tgid,
                    "comm": pe.comm,
                    "exe": exe,
                    "argv": argv,
                    "uid": None,
                    "result": None,
                }
            else:
                continue
            if record["comm"] in self._ignore:
                continue
            if self._verbose:
                self.log.info(
                    "exec: pid %d %s %s%s",
                    record["pid"],
                    record["exe"] or record["comm"] or "?",
                    record["argv"],
                    f" (failed: {record['result']})" if record["result"] else "",
                )
            self.publish("exec", record)
