"""The error hierarchy: every failure of a public call raises one of these.

Messages are lower-case fragments that name the module, source, path or
plugin involved and say what to do about it.
"""

from __future__ import annotations

__all__ = [
    "HOOK_ERRORS",
    "AlreadyRegistered",
    "InvalidArgument",
    "ModuledError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "SourceUnavailable",
    "StateError",
]


class ModuledError(Exception):
    """Base of every error raised by moduled."""


class StateError(ModuledError):
    """The call is not allowed in the module's or context's current state."""


class PermissionDenied(ModuledError):
    """A module flag, a reserved topic or a finalized context forbids the call."""


class RateLimited(ModuledError):
    """A token bucket is empty or a mailbox is full."""


class AlreadyRegistered(ModuledError):
    """A module or source with an equal name or key is already registered."""


class NotFound(ModuledError):
    """No module, source or subscription matches."""


class InvalidArgument(ModuledError, ValueError):
    """An argument has the wrong type or value."""


class SourceUnavailable(ModuledError):
    """The kernel or the process's privileges lack what a source needs."""


#: What escaping a hook or a source callback stops only the module: every
#: exception, ``SystemExit`` included (a plugin must not end the process; the
#: way out of a loop is ``ctx.quit(code)``).  ``KeyboardInterrupt`` still
#: ends the loop.
HOOK_ERRORS = (Exception, SystemExit)
