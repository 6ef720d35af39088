"""File-integrity watcher: hashes files under /etc as they change.

Source: a recursive inotify watch (``md.Path(..., recursive=True)``).  When
a file is written and closed, or renamed into place, its SHA-256 is
computed and compared with the last one seen; deletions and renames out
are reported too.  The first change of a file after start shows no
previous hash (no baseline is taken at start, which would read all of
/etc before the daemon is ready).

Publishes on ``fim/changed``::

    {"path": "/etc/hosts", "event": "modified", "sha256": "ab12...",
     "previous": "9f00..." | null, "size": 221}

``event`` is ``modified``, ``created``, ``deleted`` or ``moved-out``.  An
inotify queue overflow is published as ``{"event": "overflow"}``: changes
were missed and the reader should rescan.

Settings (``[plugins.file_integrity]``):

* ``paths``: directories to watch (default ``["/etc"]``);
* ``max_bytes``: larger files are reported without a hash (default 8 MiB).
"""

from __future__ import annotations

import hashlib
import os

import moduled as md

_MASK = (
    md.IN_CLOSE_WRITE | md.IN_MOVED_TO | md.IN_DELETE | md.IN_MOVED_FROM | md.IN_CREATE
)


def sha256_of(path: str, limit: int) -> tuple[str | None, int | None]:
    """The file's hex digest and size; no digest past ``limit`` bytes."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                return None, size
            return hashlib.file_digest(f, "sha256").hexdigest(), size
    except OSError:
        return None, None


class FileIntegrity(md.Module):
    """Report changed files with their hashes."""

    name = "file_integrity"

    def on_start(self) -> None:
        self._limit = int(self.config.get("max_bytes", 8 << 20))
        self._hashes: dict[str, str] = {}
        self._new: set[str] = set()
        for path in self.config.get("paths", ["/etc"]):
            self.register(md.Path(path, _MASK, recursive=True))

    def _report(self, path: str, event: str, **extra: object) -> None:
        self.log.info("fim: %s %s", event, path)
        self.publish("fim/changed", {"path": path, "event": event, **extra})

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            if ev.type is not md.SrcType.PATH:
                continue
            pe = ev.data
            if pe.mask & md.IN_Q_OVERFLOW:
                self.log.warning("fim: inotify queue overflowed; changes missed")
                self.publish("fim/changed", {"path": None, "event": "overflow"})
                continue
            if pe.mask & md.IN_ISDIR or not pe.name:
                continue
            path = os.path.join(pe.path, pe.name)
            if pe.mask & (md.IN_DELETE | md.IN_MOVED_FROM):
                self._new.discard(path)
                gone = "deleted" if pe.mask & md.IN_DELETE else "moved-out"
                self._report(path, gone, previous=self._hashes.pop(path, None))
            elif pe.mask & (md.IN_CLOSE_WRITE | md.IN_MOVED_TO):
                digest, size = sha256_of(path, self._limit)
                previous = self._hashes.get(path)
                if digest is not None and digest == previous:
                    continue  # rewritten with the same content
                if digest is not None:
                    self._hashes[path] = digest
                kind = "created" if path in self._new else "modified"
                self._new.discard(path)
                self._report(path, kind, sha256=digest, previous=previous, size=size)
            elif pe.mask & md.IN_CREATE:
                self._new.add(path)
