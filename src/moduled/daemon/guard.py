"""The daemon's defences against its own plugins.

Plugins run in the daemon's process and context, and they legitimately use
``self.ctx`` (``lookup``, ``modules``).  Three things a plugin could do
with it would end or cripple the daemon, so the daemon guards them:

* ``ctx.quit(code)`` would end the loop, and the daemon with it.  The
  daemon's context, :class:`DaemonContext`, ignores a ``quit`` from
  anywhere but the daemon's own shutdown and logs a warning naming the
  module that called it.
* Hooks raising ``KeyboardInterrupt``: the core treats it as a way out of
  the loop, but the daemon never receives SIGINT as ``KeyboardInterrupt``
  (it blocks SIGINT and reads it from a signalfd), so one raised by plugin
  code is a plugin bug and fails that module like any other exception.
* Stopping, pausing or binding the daemon's own modules (the supervisor,
  which holds the signals, the watches and the control socket, and the
  tap): :class:`OwnModule` refuses those calls with ``PermissionDenied``;
  should one of them stop anyway (a poison pill), it logs an error and
  starts again at the end of the round.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..context import Context
from ..errors import InvalidArgument, PermissionDenied
from ..flags import ModFlag, ModState
from ..module import Module

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["DAEMON_HOOK_ERRORS", "DaemonContext", "OwnModule", "calling_module"]

log = logging.getLogger(__name__)

#: What a plugin's hook may raise and only fail its module, in the daemon.
DAEMON_HOOK_ERRORS: tuple[type[BaseException], ...] = (
    Exception,
    SystemExit,
    KeyboardInterrupt,
)


def calling_module(skip: object = None, depth: int = 2) -> Module | None:
    """The innermost Module whose method is on the caller's stack.

    Looks for a frame whose ``self`` is a Module (not ``skip``), starting
    ``depth`` frames up; None when there is none (a plain function).
    """
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Module) and owner is not skip:
            return owner
        frame = frame.f_back
    return None


def _where(depth: int) -> str:
    frame = sys._getframe(depth)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class DaemonContext(Context):
    """The daemon's context: only the daemon's shutdown may end its loop.

    Args:
        name: the context's name.
        describe: ``describe(module)`` names a module for the log (with its
            plugin); default its name.
    """

    def __init__(
        self, name: str, *, describe: Callable[[Module], str] | None = None
    ) -> None:
        super().__init__(name, persist=True)
        self._hook_errors = DAEMON_HOOK_ERRORS
        self._describe = describe or (lambda m: f"module {m.name!r}")
        self._may_quit = False
        self.refused_quits = 0

    def quit(self, code: int = 0) -> None:
        """Refuse to end the daemon's loop: log who asked and carry on.

        Plugins stop their own modules instead (``self.stop()``); the
        daemon stops on SIGTERM / SIGINT.  May be called from any thread.

        Raises:
            InvalidArgument: ``code`` is not an int.
        """
        if not isinstance(code, int) or isinstance(code, bool):
            raise InvalidArgument(f"context {self.name!r}: quit({code!r}): pass an int")
        if self._may_quit:
            super().quit(code)
            return
        self.refused_quits += 1
        module = calling_module()
        who = self._describe(module) if module is not None else "code outside a module"
        log.warning(
            "daemon: %s called ctx.quit(%d) at %s; ignored: plugins cannot stop "
            "the daemon (a module stops itself with self.stop())",
            who,
            code,
            _where(2),
        )

    def shutdown_quit(self, code: int) -> None:
        """The daemon's own way out of the loop (its shutdown path)."""
        self._may_quit = True
        super().quit(code)


class OwnModule(Module):
    """A module of the daemon itself: plugins may not stop, pause or bind it.

    ``stopping()`` tells whether the daemon is shutting down (then it may
    stop).  Subclasses call ``super().on_stop()`` from their ``on_stop``.
    """

    flags = ModFlag.PERSIST

    def __init__(self, stopping: Callable[[], bool]) -> None:
        super().__init__()
        self._daemon_stopping = stopping
        self.revivals = 0

    def _refuse(self, call: str) -> PermissionDenied:
        return PermissionDenied(
            f"module {self.name!r}: {call}: the daemon's own module is not a "
            "plugin's to change; stop or pause your own modules"
        )

    def stop(self) -> None:
        if not self._daemon_stopping():
            raise self._refuse("stop")
        super().stop()

    def pause(self) -> None:
        raise self._refuse("pause")

    def bind(self, ref: Module | str) -> None:
        raise self._refuse("bind")

    def on_stop(self) -> None:
        if self._daemon_stopping():
            return
        ctx = self._ctx
        if ctx is None or not ctx.looping:
            return
        culprit = calling_module(skip=self)
        log.error(
            "daemon: module %s was stopped while the daemon runs (by %s); "
            "starting it again",
            self.name,
            f"module {culprit.name!r}" if culprit is not None else "a poison pill",
        )
        ctx._call_soon(self._revive)

    def _revive(self) -> None:
        if self._daemon_stopping() or self._state is not ModState.STOPPED:
            return
        self.revivals += 1
        super().start()
