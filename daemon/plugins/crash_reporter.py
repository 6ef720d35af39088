"""OOM kills and fatal signals: who died, and why.

Two modules, so that one missing kernel feature costs only its half:

* ``oom_reporter``: the ``oom:mark_victim`` tracepoint (eBPF via bcc;
  needs CAP_BPF/CAP_PERFMON and kernel headers) fires when the OOM killer
  picks a victim.  Publishes on ``crash/oom``
  ``{"pid": 4242, "comm": "hog", "uid": 1000, "total_vm_kb": ..,
  "anon_rss_kb": ..}`` (the fields this kernel's tracepoint has).
* ``signal_reporter``: the process connector's ``exit`` events; a process
  whose exit code is minus a signal number was killed by that signal.
  Only the signals that mean a crash or a kill are reported (SIGSEGV,
  SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP, SIGKILL by default;
  SIGTERM and SIGINT are how processes are normally asked to stop).
  Publishes on ``crash/signal``
  ``{"pid": 4242, "comm": "a.out", "signal": 11, "name": "SIGSEGV"}``.

Settings (``[plugins.crash_reporter]``): ``signals``: the signal names to
report (default above).
"""

from __future__ import annotations

import signal

import moduled as md

DEFAULT_SIGNALS = (
    "SIGSEGV",
    "SIGBUS",
    "SIGILL",
    "SIGFPE",
    "SIGABRT",
    "SIGSYS",
    "SIGTRAP",
    "SIGKILL",
)


class OomReporter(md.Module):
    """Report the OOM killer's victims."""

    name = "oom_reporter"

    def on_start(self) -> None:
        self.register(md.Tracepoint("oom", "mark_victim"))

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            if ev.type is not md.SrcType.PROBE:
                continue
            f = ev.data.fields
            record = {
                "pid": f.get("pid"),
                "comm": f.get("comm"),
                "uid": f.get("uid"),
            }
            for key in ("total_vm", "anon_rss", "file_rss", "shmem_rss"):
                if key in f:
                    record[f"{key}_kb"] = f[key]
            self.log.warning("oom: killed pid %s (%s)", record["pid"], record["comm"])
            self.publish("crash/oom", record)


class SignalReporter(md.Module):
    """Report processes killed by a fatal signal."""

    name = "signal_reporter"

    def on_start(self) -> None:
        names = self.config.get("signals", DEFAULT_SIGNALS)
        self._fatal = {int(getattr(signal, n)): n for n in names}
        self.register(md.ProcEvents(kinds=("exit",)))

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            if ev.type is not md.SrcType.PROC:
                continue
            pe = ev.data
            code = pe.exit_code
            # One report per process: threads (pid != tgid) die with it.
            if code is None or code >= 0 or pe.pid != pe.tgid:
                continue
            name = self._fatal.get(-code)
            if name is None:
                continue
            self.log.warning("signal: pid %d (%s) killed by %s", pe.tgid, pe.comm, name)
            self.publish(
                "crash/signal",
                {"pid": pe.tgid, "comm": pe.comm, "signal": -code, "name": name},
            )
