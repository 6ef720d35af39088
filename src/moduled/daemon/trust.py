"""Whether a plugin file may be loaded into a daemon running as root.

A plugin is Python code run with the daemon's privileges (CAP_BPF,
CAP_SYS_ADMIN ...).  Anyone who can change a plugin file, or the directory
that holds it (and so replace the file), can run code as root.  So a daemon
running as root loads a plugin only when the file and its directory are
owned by root and writable by nobody else: not by the group, not by others.
Symbolic links are followed: the file finally loaded is the one checked.

A daemon running unprivileged trusts whatever its own user may write; the
kernel already confines it.
"""

from __future__ import annotations

import os
import stat

from ..errors import PermissionDenied

__all__ = ["check_trusted"]


def _problem(path: str, st: os.stat_result, what: str) -> str | None:
    if st.st_uid != 0:
        return (
            f"{what} {path} is owned by uid {st.st_uid}, not root; "
            f"run chown root {path}"
        )
    mode = stat.S_IMODE(st.st_mode)
    for bit, who, flag in ((stat.S_IWGRP, "group", "g"), (stat.S_IWOTH, "others", "o")):
        if mode & bit:
            return (
                f"{what} {path} is writable by {who} (mode {mode:04o}); "
                f"run chmod {flag}-w {path}"
            )
    return None


def check_trusted(path: str, *, euid: int | None = None) -> None:
    """Refuse ``path`` if a non-root user could have changed it.

    Args:
        path: the plugin file.
        euid: the daemon's effective uid (default ``os.geteuid()``); the
            check applies only to root.

    Raises:
        PermissionDenied: the file or its directory is not owned by root
            or is writable by group or others; the message says which,
            why, and the command that fixes it.
    """
    if (os.geteuid() if euid is None else euid) != 0:
        return
    real = os.path.realpath(path)
    directory = os.path.dirname(real) or "/"
    for target, what in ((directory, "directory"), (real, "file")):
        try:
            st = os.stat(target)
        except OSError as exc:
            raise PermissionDenied(
                f"plugin {path}: refused: cannot stat {what} {target} ({exc.strerror})"
            ) from None
        problem = _problem(target, st, what)
        if problem is not None:
            raise PermissionDenied(f"plugin {path}: refused: {problem}")
