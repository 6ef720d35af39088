"""Correlation: a file written in a temporary directory, then executed.

No single event says anything is wrong: files are written to /tmp all the
time, and programs are started all the time.  Dropping a binary or script
into a world-writable directory and running it soon after is, however, how
much malware arrives.  This plugin joins two sources to see it:

* ``md.Path`` on ``/tmp``, ``/dev/shm`` and ``/var/tmp`` (IN_CLOSE_WRITE,
  IN_MOVED_TO): remembers which file was written when;
* ``md.ProcEvents(kinds=("exec",))``: for each new program, its
  ``/proc/<pid>/exe`` and the script paths in its argv (``sh /tmp/x``).

An exec of a file written less than ``window`` seconds earlier is an
alert, published on ``alert/write-exec``::

    {"pid": 4242, "comm": "x", "path": "/tmp/x", "exe": "/tmp/x",
     "written_ago_s": 0.8, "argv": ["/tmp/x"]}

Settings (``[plugins.write_exec]``): ``dirs`` (default the three above),
``window`` in seconds (default 60), ``recursive`` (default false).
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
        self.register(md.ProcEvents(kinds=("exec",)))

    def _prune(self, now: int) -> None:
        horizon = now - self._window_ns
        stale = [p for p, t in self._written.items() if t < horizon]
        for p in stale:
            del self._written[p]
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
                self._check_exec(ev.data, now)
        if len(self._written) > 64:
            self._prune(now)

    def _check_exec(self, pe: md.ProcEvent, now: int) -> None:
        exe, argv, paths = self._candidates(pe.tgid)
        for path in paths:
            written = self._written.get(path)
            if written is None or now - written > self._window_ns:
                continue
            ago = round((now - written) / 1e9, 3)
            self.log.warning(
                "write-exec: pid %d (%s) runs %s, written %.1f s ago",
                pe.tgid,
                pe.comm,
                path,
                ago,
            )
            self.publish(
                "alert/write-exec",
                {
                    "pid": pe.tgid,
                    "comm": pe.comm,
                    "path": path,
                    "exe": exe,
                    "written_ago_s": ago,
                    "argv": argv,
                },
            )
            return
