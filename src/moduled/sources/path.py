"""Path: inotify watches on a file or a directory tree.

Kernel facts this source relies on:

* Each inotify instance has a queue of at most
  ``/proc/sys/fs/inotify/max_queued_events`` events.  When it is full the
  kernel drops further events and queues a single ``IN_Q_OVERFLOW`` (wd -1)
  instead; how many were dropped is unknown.  The source logs a warning,
  counts one lost event per overflow, and still delivers the overflow to the
  module as ``PathEvent(path, "", IN_Q_OVERFLOW, 0)`` so that it can rescan.
* Watches are per inode and limited by ``fs.inotify.max_user_watches``
  (ENOSPC when exhausted); instances by ``fs.inotify.max_user_instances``
  (EMFILE).
* inotify is not recursive.  With ``recursive=True`` the source watches every
  directory of the tree and adds a watch when a directory is created or moved
  in.  Entries made in a new directory before its watch exists produce no
  event, so the source scans the directory right after adding the watch and
  emits a synthetic ``IN_CREATE`` for each entry: nothing is missed, but an
  entry made during that window may be reported twice.  A directory moved
  out of the tree loses its watches.
* The kernel sends ``IN_IGNORED`` when a watch goes away (its directory was
  deleted or unmounted); the source forgets the watch.
* One ``read()`` returns as many whole events as fit in the buffer; the
  source reads once per wakeup into a preallocated buffer, decodes every
  record and hands the whole list to the module at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import sys
from typing import Any, ClassVar

from inotify_simple import INotify

from ..errors import InvalidArgument, NotFound, PermissionDenied, SourceUnavailable
from ..events import PathEvent
from ..flags import SrcType
from .base import Source

__all__ = [
    "IN_ACCESS",
    "IN_ALL_EVENTS",
    "IN_ATTRIB",
    "IN_CLOSE",
    "IN_CLOSE_NOWRITE",
    "IN_CLOSE_WRITE",
    "IN_CREATE",
    "IN_DELETE",
    "IN_DELETE_SELF",
    "IN_DONT_FOLLOW",
    "IN_EXCL_UNLINK",
    "IN_IGNORED",
    "IN_ISDIR",
    "IN_MODIFY",
    "IN_MOVE",
    "IN_MOVED_FROM",
    "IN_MOVED_TO",
    "IN_MOVE_SELF",
    "IN_ONLYDIR",
    "IN_OPEN",
    "IN_Q_OVERFLOW",
    "IN_UNMOUNT",
    "Path",
]

log = logging.getLogger(__name__)

# Events (from <sys/inotify.h>).
IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_CLOSE = IN_CLOSE_WRITE | IN_CLOSE_NOWRITE
IN_MOVE = IN_MOVED_FROM | IN_MOVED_TO
IN_ALL_EVENTS = 0x00000FFF
# Sent by the kernel whatever the mask.
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
# Watch options.
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
# Set in an event's mask when the subject is a directory.
IN_ISDIR = 0x40000000

_OPTIONS = IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
_ALWAYS = IN_UNMOUNT | IN_Q_OVERFLOW | IN_IGNORED
# What a recursive watch needs whatever the caller asked for.
_TREE = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM
_NEW_DIR = IN_ISDIR | IN_CREATE
_MOVED_IN_DIR = IN_ISDIR | IN_MOVED_TO
_MOVED_OUT_DIR = IN_ISDIR | IN_MOVED_FROM
_SPECIAL = _ALWAYS | IN_ISDIR

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len: struct inotify_event
_BUFSIZE = 1 << 18  # 256 KiB: about 8000 events with short names
_FSENC = sys.getfilesystemencoding()


class Path(Source):
    """Watch a file or directory with inotify.

    Args:
        path: the file or directory (str or path-like); made absolute and
            normalised, which is the source's key.
        events: a mask of ``IN_*`` events (``md.IN_CREATE | md.IN_MODIFY``),
            optionally with ``IN_ONLYDIR``, ``IN_DONT_FOLLOW``,
            ``IN_EXCL_UNLINK``.
        recursive: also watch every directory below ``path``, including the
            ones created later.

    Each event is ``PathEvent(path, name, mask, cookie)``: ``path`` is the
    watched directory the event happened in (or the watched file), ``name``
    the entry inside it ('' when the event is about ``path`` itself),
    ``mask`` the kernel's mask (``IN_ISDIR`` set for directories) and
    ``cookie`` ties ``IN_MOVED_FROM`` to its ``IN_MOVED_TO``.  ``IN_IGNORED``,
    ``IN_UNMOUNT`` and ``IN_Q_OVERFLOW`` are always delivered.
    """

    type: ClassVar[SrcType] = SrcType.PATH

    def __init__(self, path: Any, events: int, recursive: bool = False) -> None:
        try:
            raw = os.fspath(path)
        except TypeError:
            raise InvalidArgument(
                f"Path: path {path!r} must be a str or path-like object"
            ) from None
        if isinstance(raw, bytes):
            raw = os.fsdecode(raw)
        if not raw or "\0" in raw:
            raise InvalidArgument(f"Path: path {raw!r} is empty or contains NUL")
        if isinstance(events, bool) or not isinstance(events, int):
            raise InvalidArgument(
                f"Path({raw!r}): events {events!r} must be an int mask of md.IN_* "
                "values"
            )
        unknown = events & ~(IN_ALL_EVENTS | _OPTIONS)
        if unknown:
            raise InvalidArgument(
                f"Path({raw!r}): events {events:#x} has unsupported bits "
                f"{unknown:#x}; use md.IN_* events and IN_ONLYDIR, IN_DONT_FOLLOW, "
                "IN_EXCL_UNLINK"
            )
        if not events & IN_ALL_EVENTS:
            raise InvalidArgument(
                f"Path({raw!r}): events {events:#x} selects no event; pass e.g. "
                "md.IN_CREATE | md.IN_MODIFY"
            )
        if not isinstance(recursive, bool):
            raise InvalidArgument(f"Path({raw!r}): recursive must be True or False")
        self._path = os.path.abspath(raw)
        self._mask = events
        self._recursive = recursive
        self._watch_mask = events | _TREE if recursive else events
        self._inotify: INotify | None = None
        self._fd = -1
        self._paths: dict[int, str] = {}  # wd -> directory (or file) path
        self._wds: dict[str, int] = {}  # and back
        self._buf = bytearray()
        self._view = memoryview(self._buf)
        self._overflows = 0
        self._synthetic = 0

    @property
    def key(self) -> str:
        return self._path

    @property
    def path(self) -> str:
        return self._path

    @property
    def mask(self) -> int:
        return self._mask

    @property
    def recursive(self) -> bool:
        return self._recursive

    @property
    def overflows(self) -> int:
        """How many times the kernel queue overflowed."""
        return self._overflows

    # -- watches --------------------------------------------------------------

    def _error(self, exc: OSError, path: str) -> Exception:
        """Turn an inotify_init/add_watch failure into a typed error."""
        what = f"Path({self._path!r})"
        if exc.errno == errno.ENOENT:
            return NotFound(f"{what}: {path} does not exist; create it first")
        if exc.errno == errno.ENOTDIR:
            return InvalidArgument(
                f"{what}: {path} is not a directory (IN_ONLYDIR); drop IN_ONLYDIR"
            )
        if exc.errno == errno.EACCES:
            return PermissionDenied(
                f"{what}: no read permission on {path}; run with access to it"
            )
        if exc.errno == errno.ENOSPC:
            return SourceUnavailable(
                f"{what}: the inotify watch limit is reached; raise "
                "fs.inotify.max_user_watches (sysctl -w "
                "fs.inotify.max_user_watches=524288)"
            )
        if exc.errno == errno.EMFILE:
            return SourceUnavailable(
                f"{what}: too many inotify instances or open files; raise "
                "fs.inotify.max_user_instances or ulimit -n"
            )
        return SourceUnavailable(f"{what}: inotify failed on {path}: {exc}")

    def _add_watch(self, path: str) -> int:
        assert self._inotify is not None
        wd = self._inotify.add_watch(path, self._watch_mask)
        old = self._paths.get(wd)
        if old is not None and old != path:
            # Same inode under a new name (moved inside the tree).
            self._wds.pop(old, None)
        self._paths[wd] = path
        self._wds[path] = wd
        return wd

    def _watch_tree(self, top: str, emit: list[PathEvent] | None) -> None:
        """Watch ``top`` and every directory below it.  With ``emit``, append a
        synthetic IN_CREATE for each entry found (they may predate the watch).
        """
        pending = [top]
        want_create = emit is not None and self._mask & IN_CREATE
        while pending:
            directory = pending.pop()
            try:
                self._add_watch(directory)
                entries = list(os.scandir(directory))
            except OSError as exc:
                if directory == top and emit is None:
                    raise
                # Gone or unreadable already: its parent reports what matters.
                log.debug("%s: cannot watch %s: %s", self._path, directory, exc)
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    pending.append(entry.path)
                if want_create:
                    assert emit is not None
                    mask = IN_CREATE | IN_ISDIR if is_dir else IN_CREATE
                    emit.append(PathEvent(directory, entry.name, mask, 0))
                    self._synthetic += 1

    def _forget_tree(self, top: str) -> None:
        """Remove the watches of ``top`` and of every directory below it."""
        assert self._inotify is not None
        prefix = top + os.sep
        for path in [p for p in self._wds if p == top or p.startswith(prefix)]:
            wd = self._wds.pop(path)
            self._paths.pop(wd, None)
            with contextlib.suppress(OSError):  # already gone with its directory
                self._inotify.rm_watch(wd)

    # -- source contract --------------------------------------------------------

    def _attach(self) -> None:
        assert self._ctx is not None
        try:
            inotify = INotify(nonblocking=True)
        except OSError as exc:
            raise self._error(exc, self._path) from exc
        self._inotify = inotify
        try:
            if self._recursive and os.path.isdir(self._path):
                self._watch_tree(self._path, None)
            else:
                self._add_watch(self._path)
            self._fd = inotify.fileno()
            self._ctx._add_reader(self._fd, self._on_readable)
        except OSError as exc:
            self._close()
            raise self._error(exc, self._path) from exc
        except BaseException:
            self._close()
            raise
        if len(self._buf) != _BUFSIZE:
            self._buf = bytearray(_BUFSIZE)
            self._view = memoryview(self._buf)

    def _close(self) -> None:
        inotify, self._inotify = self._inotify, None
        self._fd = -1
        self._paths.clear()
        self._wds.clear()
        if inotify is not None:
            inotify.close()

    def _detach(self) -> None:
        if self._inotify is None:
            return
        if self._fd >= 0 and self._ctx is not None:
            self._ctx._remove_reader(self._fd)
        self._close()

    # -- events -----------------------------------------------------------------

    def _on_readable(self) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        try:
            size = inotify.readinto(self._view)
        except BlockingIOError:
            return
        if not size:
            return
        buf = self._buf
        paths = self._paths
        unpack = _HEADER.unpack_from
        out: list[PathEvent] = []
        append = out.append
        special = _SPECIAL
        # Non-recursive watches use the caller's mask as is: no filtering.
        wanted = self._mask | _ALWAYS if self._recursive else 0
        pos = 0
        while pos < size:
            wd, mask, cookie, length = unpack(buf, pos)
            pos += 16
            if length:
                end = buf.find(0, pos, pos + length)
                name = buf[pos : end if end >= 0 else pos + length].decode(
                    _FSENC, "surrogateescape"
                )
                pos += length
            else:
                name = ""
            path = paths.get(wd)
            if mask & special and self._special(wd, mask, path, name, cookie, out=out):
                continue
            if path is None:
                continue  # a watch we removed, still in the queue
            if wanted and not mask & wanted:
                continue
            append(PathEvent(path, name, mask, cookie))
        if out:
            self._emit_many(out)

    def _special(
        self,
        wd: int,
        mask: int,
        path: str | None,
        name: str,
        cookie: int,
        *,
        out: list[PathEvent],
    ) -> bool:
        """Handle overflow, IN_IGNORED and directory changes; True to skip."""
        if mask & IN_Q_OVERFLOW:
            self._overflows += 1
            self._add_lost(1)
            log.warning(
                "%s: inotify queue overflowed, events were lost (overflow %d); "
                "raise fs.inotify.max_queued_events or read faster",
                self._path,
                self._overflows,
            )
            out.append(PathEvent(self._path, "", mask, cookie))
            return True
        if path is None:
            return True
        if mask & IN_IGNORED:
            del self._paths[wd]
            if self._wds.get(path) == wd:
                del self._wds[path]
            return False
        if self._recursive and mask & IN_ISDIR:
            sub = os.path.join(path, name)
            if mask & _NEW_DIR == _NEW_DIR or mask & _MOVED_IN_DIR == _MOVED_IN_DIR:
                if mask & self._mask:
                    out.append(PathEvent(path, name, mask, cookie))
                self._watch_tree(sub, out)
                return True
            if mask & _MOVED_OUT_DIR == _MOVED_OUT_DIR:
                self._forget_tree(sub)
        return False

    def _dump(self) -> dict[str, Any]:
        return {
            "path": self._path,
            "mask": self._mask,
            "recursive": self._recursive,
            "watches": len(self._paths),
            "overflows": self._overflows,
            "synthetic": self._synthetic,
        }
