"""Correlation: a file written in a temporary directory, then executed.

No single event says anything is wrong: files are written to /tmp all the
time, and programs are started all the time.  Dropping a binary or script
into a world-writable directory and running it soon after is, however, how
much malware arrives.  This plugin joins two sources to see it:

* ``md.Path`` on ``/tmp``, ``/dev/shm`` and ``/var/tmp`` (IN_CLOSE_WRITE,
  IN_MOVED_TO): remembers which file was written when;
* the ``sched:sched_process_exec`` tracepoint (eBPF), whose ``filename``
  names the file executed even when the program exits at once; and the
  process connector (``md.ProcEvents(kinds=("exec",))``), for each new
  program's ``/proc/<pid>/exe`` and the script paths in its argv
  (``sh /tmp/x``) while it still runs.  Either alone works (no eBPF: only
  the process connector); an exec seen by both is reported once.

An exec of a file written less than ``window`` seconds earlier is an
alert, published on ``alert/write-exec``::

    {"pid": 4242, "comm": "x", "path": "/tmp/x", "exe": "/tmp/x",
     "written_ago_s": 0.8, "argv": ["/tmp/x"]}

Settings (``[plugins.write_exec]``): ``dirs`` (default the three above),
``window`` in seconds (default 60), ``recursive`` (default false),
``ebpf`` (default true; false: the process connector only, and about
120 MiB less memory, bcc's LLVM being the bulk of it).
"""

from __future__ import annotations

import os
import time

import moduled as md

DEFAULT_DIRS = ("/tmp", "/dev/shm", "/var/tmp")
_MAX_TRACKED = 10000
_DELETED = " (deleted)"


class WriteExec(md.Module):
    """Alert on files executed soon after being written in temp dirs."""

    name = "write_exec"

    def on_start(self) -> None:
        self._window_ns = int(float(self.config.get("window", 60)) * 1e9)
        self._written: dict[str, int] = {}
        recursive = bool(self.config.get("recursive", False))
        mask = md.IN_CLOSE_WRITE | md.IN_MOVED_TO
        for d in self.config.get("dirs", DEFAULT_DIRS):
            if os.path.isdir(d):
                self.register(md.Path(d, mask, recursive=recursive))
        self._alerted: dict[tuple[int, str], int] = {}
        if self.config.get("ebpf", True):
            try:
                self.register(
                    md.Tracepoint("sched", "sched_process_exec", fields=["filename"])
                )
            except md.SourceUnavailable as exc:
                self.log.info("write-exec: no eBPF (%s); /proc only", exc)
        self.register(md.ProcEvents(kinds=("exec",)))

    def _prune(self, now: int) -> None:
        horizon = now - self._window_ns
        for p in [p for p, t in self._written.items() if t < horizon]:
            del self._written[p]
        for k in [k for k, t in self._alerted.items() if t < horizon]:
            del self._alerted[k]
        while len(self._written) > _MAX_TRACKED:
            del self._written[next(iter(self._written))]

    def _candidates(self, pid: int) -> tuple[str | None, list[str], list[str]]:
        try:
            exe: str | None = os.readlink(f"/proc/{pid}/exe").removesuffix(_DELETED)
        except OSError:
            exe = None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read(4096).split(b"\0")]
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            argv, cwd = [], "/"
        argv = [a for a in argv if a]
        paths = [exe] if exe else []
        for arg in argv[:4]:
            if "/" in arg:
                paths.append(os.path.normpath(os.path.join(cwd, arg)))
        return exe, argv, paths

    def on_evt(self, events: list[md.Event]) -> None:
        now = time.monotonic_ns()
        for ev in events:
            if ev.type is md.SrcType.PATH:
                pe = ev.data
                if pe.name and not pe.mask & md.IN_ISDIR:
                    path = os.path.realpath(os.path.join(pe.path, pe.name))
                    self._written.pop(path, None)  # keep insertion order = age
                    self._written[path] = ev.ts
            elif ev.type is md.SrcType.PROC and self._written:
                exe, argv, paths = self._candidates(ev.data.tgid)
                self._check(ev.data.tgid, ev.data.comm, exe, paths, argv=argv, now=now)
            elif ev.type is md.SrcType.PROBE and self._written:
                f = ev.data.fields
                path = os.path.realpath(f["filename"])
                self._check(f["tgid"], f["comm"], path, [path], argv=[], now=now)
        if len(self._written) > 64 or len(self._alerted) > 64:
            self._prune(now)

    def _check(
        self,
        pid: int,
        comm: str | None,
        exe: str | None,
        paths: list[str],
        *,
        argv: list[str],
        now: int,
    ) -> None:
        for path in paths:
            written = self._written.get(path)
            if written is None or now - written > self._window_ns:
                continue
            if (pid, path) in self._alerted:
                return  # the other source saw this exec first
            self._alerted[(pid, path)] = now
            ago = round((now - written) / 1e9, 3)
            self.log.warning(
                "write-exec: pid %d (%s) runs %s, written %.1f s ago",
                pid,
                comm,
                path,
                ago,
            )
            self.publish(
                "alert/write-exec",
                {
                    "pid": pid,
                    "comm": comm,
                    "path": path,
                    "exe": exe,
                    "written_ago_s": ago,
                    "argv": argv,
                },
            )
            return
