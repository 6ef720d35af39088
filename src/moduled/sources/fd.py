"""Fd: a readable file descriptor, watched level-triggered.

The loop only reports readiness; the module reads the fd itself.  Because
epoll is level-triggered, an fd that stays readable wakes the loop on every
poll until someone reads it.  A PAUSED module does not read, so the source
stops watching its fd once it has queued one event for a module that is not
running, and watches it again when the module resumes.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

from ..errors import InvalidArgument
from ..events import FdEvent
from ..flags import ModState, SrcFlag, SrcType
from .base import Source

__all__ = ["Fd"]

log = logging.getLogger(__name__)


class Fd(Source):
    """Report when a file descriptor becomes readable.

    Args:
        fd_or_file: an int >= 0, or any object with a ``fileno()`` method
            (a file, a socket, ``sys.stdin``).  The object is kept alive
            while the source is registered.

    Flags: ``DUP`` watches a duplicate of the fd (closed on detach), so the
    caller may close its own; ``FD_AUTOCLOSE`` closes the caller's fd (or
    calls the object's ``close()``) on deregistration.  Events always have
    ``PRIO_HIGH``.  ``FdEvent.fd`` is the fd being watched: the duplicate
    when ``DUP`` is set.
    """

    type: ClassVar[SrcType] = SrcType.FD
    forced_flags: ClassVar[SrcFlag] = SrcFlag.PRIO_HIGH
    type_flags: ClassVar[SrcFlag] = SrcFlag.FD_AUTOCLOSE | SrcFlag.DUP

    def __init__(self, fd_or_file: Any) -> None:
        self._file: Any = None
        if isinstance(fd_or_file, bool) or not isinstance(fd_or_file, int):
            fileno = getattr(fd_or_file, "fileno", None)
            if isinstance(fd_or_file, bool) or not callable(fileno):
                raise InvalidArgument(
                    f"Fd: {fd_or_file!r} is neither an fd nor an object with "
                    "fileno(); pass an int >= 0 or an open file or socket"
                )
            try:
                fd = fileno()
            except (OSError, ValueError) as exc:
                raise InvalidArgument(
                    f"Fd: {fd_or_file!r}.fileno() failed ({exc}); pass an open file"
                ) from exc
            self._file = fd_or_file
        else:
            fd = fd_or_file
        if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
            raise InvalidArgument(f"Fd: fd {fd!r} must be an int >= 0")
        self._fd = fd
        self._watched = -1  # the fd given to the loop (the dup with DUP)
        self._reading = False

    @property
    def key(self) -> int:
        return self._fd

    @property
    def fd(self) -> int:
        """The caller's fd."""
        return self._fd

    def _attach(self) -> None:
        try:
            os.fstat(self._fd)
        except OSError as exc:
            raise InvalidArgument(
                f"Fd({self._fd}): not an open file descriptor ({exc.strerror}); "
                "register an open fd"
            ) from exc
        watched = os.dup(self._fd) if self._flags & SrcFlag.DUP else self._fd
        self._watched = watched
        try:
            self._start_reading()
        except BaseException as exc:
            if watched != self._fd:
                os.close(watched)
            self._watched = -1
            if isinstance(exc, PermissionError):
                raise InvalidArgument(
                    f"Fd({self._fd}): this kind of file cannot be polled (regular "
                    "files and directories are always readable); read it directly"
                ) from exc
            if isinstance(exc, OSError):
                raise InvalidArgument(
                    f"Fd({self._fd}): the loop cannot watch this fd ({exc.strerror})"
                ) from exc
            raise

    def _start_reading(self) -> None:
        if not self._reading and self._watched >= 0 and self._ctx is not None:
            self._ctx._add_reader(self._watched, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading and self._ctx is not None:
            self._reading = False
            try:
                self._ctx._remove_reader(self._watched)
            except (OSError, KeyError, ValueError):
                # The caller may have closed the fd already; epoll forgot it.
                log.debug("%r: fd already gone from the loop", self)

    def _on_readable(self) -> None:
        module = self._module
        if module is None:
            return
        self._emit(FdEvent(self._watched))
        if module.state is not ModState.RUNNING:
            self._stop_reading()

    def _pause(self) -> None:
        """The module paused: stop watching until it resumes."""
        self._stop_reading()

    def _resume(self) -> None:
        """The module resumed: watch the fd again (it may still be readable)."""
        self._start_reading()

    def _detach(self) -> None:
        self._stop_reading()
        watched, self._watched = self._watched, -1
        if watched < 0:
            return
        if watched != self._fd:
            os.close(watched)
        if self._flags & SrcFlag.FD_AUTOCLOSE:
            try:
                if self._file is not None:
                    self._file.close()
                else:
                    os.close(self._fd)
            except OSError as exc:
                log.debug("%r: autoclose failed: %s", self, exc)

    def _dump(self) -> dict[str, Any]:
        return {
            "fd": self._fd,
            "watched_fd": self._watched,
            "dup": bool(self._flags & SrcFlag.DUP),
            "autoclose": bool(self._flags & SrcFlag.FD_AUTOCLOSE),
            "watching": self._reading,
        }
