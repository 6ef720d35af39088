"""Pid: a process, watched through a pidfd until it exits.

A pidfd (``pidfd_open``, Linux 5.3) refers to one process for good: unlike a
pid number it cannot be recycled, and it becomes readable once the process
has exited.  Only the parent can learn the exit status (and must reap the
zombie), so the source reaps the process with ``waitid(P_PIDFD)`` when it is
one of ours, and reports ``exit_status`` None for anybody else's.

``exit_status`` follows ``os.waitstatus_to_exitcode``: the exit code (0..255)
when the process exited, ``-signo`` when a signal killed it.  If something
else reaps our child first (``subprocess.Popen.wait``, a SIGCHLD handler),
the status is gone and the event says None.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from ..errors import InvalidArgument, NotFound, PermissionDenied, SourceUnavailable
from ..events import PidEvent
from ..flags import SrcFlag, SrcType
from .base import Source

__all__ = ["Pid"]

_CLD_EXITED = 1  # si_code values of waitid(), from <signal.h>


class Pid(Source):
    """Report the exit of process ``pid`` as one ``PidEvent(pid, exit_status)``.

    Args:
        pid: a process id > 0 that exists when the source is registered.

    The source is inherently one-shot: it deregisters itself after its event.
    Registering a process that does not exist raises ``NotFound``.
    """

    type: ClassVar[SrcType] = SrcType.PID
    forced_flags: ClassVar[SrcFlag] = SrcFlag.ONESHOT

    def __init__(self, pid: int) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise InvalidArgument(f"Pid: pid {pid!r} must be an int > 0")
        self._pid = pid
        self._pidfd = -1
        self._child: bool | None = None

    @property
    def key(self) -> int:
        return self._pid

    @property
    def pid(self) -> int:
        return self._pid

    def _attach(self) -> None:
        assert self._ctx is not None
        try:
            pidfd = os.pidfd_open(self._pid)
        except ProcessLookupError as exc:
            raise NotFound(
                f"Pid({self._pid}): no such process; it may have exited and been "
                "reaped already"
            ) from exc
        except PermissionError as exc:
            raise PermissionDenied(
                f"Pid({self._pid}): pidfd_open refused ({exc.strerror})"
            ) from exc
        except OSError as exc:
            raise SourceUnavailable(
                f"Pid({self._pid}): pidfd_open failed ({exc.strerror}); pidfds need "
                "Linux 5.3 or later"
            ) from exc
        os.set_blocking(pidfd, False)
        try:
            self._ctx._add_reader(pidfd, self._on_readable)
        except BaseException:
            os.close(pidfd)
            raise
        self._pidfd = pidfd

    def _reap(self) -> tuple[bool, int | None]:
        """Reap the process if it is our child.

        Returns:
            (done, exit_status): done is False when our child has not
            finished exiting yet (try again on the next wakeup).
        """
        try:
            res = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            self._child = False
            return True, None  # not our child, or reaped by someone else
        self._child = True
        if res is None:
            return False, None
        if res.si_code == _CLD_EXITED:
            return True, res.si_status
        return True, -res.si_status  # killed or dumped: -signo

    def _on_readable(self) -> None:
        if self._pidfd < 0:
            return
        done, status = self._reap()
        if done:
            self._emit(PidEvent(self._pid, status))

    def _detach(self) -> None:
        pidfd, self._pidfd = self._pidfd, -1
        if pidfd < 0:
            return
        if self._ctx is not None:
            self._ctx._remove_reader(pidfd)
        os.close(pidfd)

    def _dump(self) -> dict[str, Any]:
        return {"pid": self._pid, "child": self._child}
