"""Record and replay of delivered events (libmodule 6.x roadmap).

``ctx.store(path)`` records every event the context delivers (except fd
events, whose data is only a number valid in this process) into a SQLite
file; ``ctx.replay_from(path)`` hands recorded events back to the
same-named modules when the loop starts, before it polls for anything new,
with ``ev.replayed`` set.  A daemon started with ``--store`` can thus be
re-run later, or elsewhere, over the same events: to test a new version of
a plugin against yesterday's incidents, say.

What a record keeps:

* the module's name, the source type, the event's ``ts`` and its data and
  userdata, pickled;
* for messages, the sender's *name* instead of the sender module, since the
  module object cannot outlive the process: a replayed ``PsMessage`` has a
  ``str`` sender (or None for the context's own messages);
* data that cannot be pickled (a task's result holding a socket, say) is
  recorded as its ``repr`` and counted in ``unpicklable``.

Rows are written in one transaction per dispatch round at most every
``COMMIT_NS`` (and on close), so recording costs one ``executemany`` a
round rather than a disk sync per event.  A replay file is only read:
pickles run code when loaded, so replay only files you recorded yourself.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import time
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument, NotFound
from .events import Event, PsMessage
from .flags import SrcType

if TYPE_CHECKING:
    from .context import Context

__all__ = ["COMMIT_NS", "EventStore", "replay_rows"]

log = logging.getLogger("moduled.core")

#: Longest time recorded events wait in memory before they are committed.
COMMIT_NS = 200_000_000
#: Rows read from a replay file at a time.
REPLAY_CHUNK = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    module   TEXT    NOT NULL,
    type     TEXT    NOT NULL,
    ts       INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    userdata BLOB
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
_SKIPPED = frozenset({SrcType.FD})
_TYPES = {t.value: t for t in SrcType}


def _picklable(obj: Any) -> bool:
    try:
        pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # any object may refuse pickling
        return False
    return True


def _dumps(obj: Any) -> tuple[bytes, bool]:
    """Pickle ``obj``, replacing what will not pickle by its repr: field by
    field for the event records (named tuples), whole otherwise.  Tell
    whether everything pickled."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), True
    except Exception:  # any object may refuse pickling
        pass
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        fields = [f if _picklable(f) else repr(f) for f in obj]
        try:
            return pickle.dumps(type(obj)(*fields)), False
        except Exception:  # fall back to the whole repr
            pass
    return pickle.dumps(repr(obj)), False


class EventStore:
    """An open recording: ``ctx.store(path)`` makes one.

    Args:
        path: the SQLite file; created when missing, appended to otherwise.
        exclude: names of modules whose events are not recorded (a daemon's
            own modules, whose replayed signals would act again).

    Raises:
        InvalidArgument: ``path`` is not a string or path, or the file is
            not a moduled recording.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, exclude: Iterable[str] = ()
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise InvalidArgument(f"store {path!r}: pass a file path")
        if isinstance(exclude, str):
            raise InvalidArgument(f"store: exclude={exclude!r}: pass module names")
        self.path = os.fspath(path)
        self.exclude = frozenset(exclude)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.executescript(_SCHEMA)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('format', 'moduled-events-1')"
            )
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise InvalidArgument(
                f"store {self.path!r}: {exc}; give a new file or a moduled recording"
            ) from None
        self._rows: list[tuple[str, str, int, bytes, bytes | None]] = []
        self._last_commit = time.monotonic_ns()
        self.recorded = 0
        self.unpicklable = 0
        self.closed = False

    def record(self, module: str, events: list[Event]) -> None:
        """Queue the recordable events of one delivered batch."""
        if module in self.exclude:
            return
        rows = self._rows
        for ev in events:
            if ev.replayed or ev.type in _SKIPPED:
                continue
            data = ev.data
            if ev.type is SrcType.PS:
                sender = data.sender
                data = PsMessage(
                    sender
                    if sender is None or isinstance(sender, str)
                    else sender.name,
                    data.topic,
                    data.message,
                )
            blob, ok = _dumps(data)
            if not ok:
                self.unpicklable += 1
            ud = None
            if ev.userdata is not None:
                ud, ok = _dumps(ev.userdata)
                if not ok:
                    self.unpicklable += 1
            rows.append((module, ev.type.value, ev.ts, blob, ud))

    def maybe_commit(self) -> None:
        """Commit queued rows if ``COMMIT_NS`` has passed since the last."""
        if self._rows and time.monotonic_ns() - self._last_commit >= COMMIT_NS:
            self.commit()

    def commit(self) -> None:
        """Write every queued row now."""
        rows, self._rows = self._rows, []
        self._last_commit = time.monotonic_ns()
        if not rows or self.closed:
            return
        try:
            with self._db:
                self._db.executemany(
                    "INSERT INTO events (module, type, ts, data, userdata) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            log.warning(
                "store %s: %d events not recorded: %s", self.path, len(rows), exc
            )
            return
        self.recorded += len(rows)

    def close(self) -> None:
        """Commit what is queued and close the file; idempotent."""
        if self.closed:
            return
        self.commit()
        self.closed = True
        self._db.close()

    def dump(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "recorded": self.recorded,
            "queued": len(self._rows),
            "excluded": sorted(self.exclude),
            "unpicklable": self.unpicklable,
        }


def replay_rows(
    path: str | os.PathLike[str],
) -> Generator[tuple[str, Event], None, None]:
    """Yield ``(module name, event)`` from a recording, oldest first.

    Raises:
        NotFound: no such file.
        InvalidArgument: the file is not a moduled recording.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InvalidArgument(f"replay {path!r}: pass a file path")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NotFound(f"replay {path!r}: no such file; record one with --store")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        fmt = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise InvalidArgument(
            f"replay {path!r}: not a moduled recording ({exc})"
        ) from None
    if fmt is None or fmt[0] != "moduled-events-1":
        db.close()
        raise InvalidArgument(f"replay {path!r}: not a moduled recording")
    return _rows(db)


def _rows(db: sqlite3.Connection) -> Generator[tuple[str, Event], None, None]:
    try:
        cursor = db.execute(
            "SELECT module, type, ts, data, userdata FROM events ORDER BY seq"
        )
        while chunk := cursor.fetchmany(REPLAY_CHUNK):
            for module, type_, ts, blob, ud in chunk:
                src_type = _TYPES.get(type_)
                if src_type is None:
                    continue
                data = pickle.loads(blob)
                userdata = pickle.loads(ud) if ud is not None else None
                yield module, Event(src_type, data, userdata, ts, True)
    finally:
        db.close()


def _hand_over(ctx: Context, chunk: dict[Any, list[Event]]) -> None:
    # Replayed events go ahead of what the modules queued while starting,
    # in recorded order, and are delivered before the loop polls.
    for mod, events in chunk.items():
        mod._push_front(events)
    ctx._drain()


def replay_into(ctx: Context, path: str | os.PathLike[str]) -> dict[str, int]:
    """Deliver a recording to ``ctx``'s modules (loop thread, loop start).

    Returns:
        Counters: ``replayed`` events handed to modules, ``skipped`` ones
        whose module is missing or not running.
    """
    from .module import ModState

    counts = {"replayed": 0, "skipped": 0}
    missing: dict[str, int] = {}
    live = (ModState.RUNNING, ModState.PAUSED)
    chunk: dict[Any, list[Event]] = {}
    size = 0
    for name, ev in replay_rows(path):
        mod = ctx._modules.get(name)
        if mod is None or mod._state not in live:
            counts["skipped"] += 1
            missing[name] = missing.get(name, 0) + 1
            continue
        chunk.setdefault(mod, []).append(ev)
        counts["replayed"] += 1
        size += 1
        if size >= REPLAY_CHUNK:
            _hand_over(ctx, chunk)
            chunk, size = {}, 0
    _hand_over(ctx, chunk)
    for name, n in missing.items():
        log.warning("replay: %d events for module %r skipped (not running)", n, name)
    return counts
