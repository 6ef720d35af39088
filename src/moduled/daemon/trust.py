"""Whether a plugin file may be loaded into a daemon running as root.

A plugin is Python code run with the daemon's privileges (CAP_BPF,
CAP_SYS_ADMIN ...).  Anyone who can change a plugin file, or any directory
on the way to it (and so swap the file or a whole subtree for their own),
can run code as root.  So a daemon running as root loads a plugin only when:

* the file is a regular file owned by root and writable by nobody else;
* every directory from the file's up to ``/`` is owned by root and not
  writable by group or others, except a sticky directory such as ``/tmp``
  (1777): there others may add entries but not rename or remove one they
  do not own, so it is safe when the next component is root's.

Symbolic links are resolved first: the file finally loaded, and the
directories that really lead to it, are the ones checked.

Checking a path and then opening it again would leave a window in which
the file could be replaced (time of check to time of use).  So
:func:`read_plugin` opens the resolved file once, with ``O_NOFOLLOW`` (its
last component cannot have become a symlink since), runs the file checks
on that descriptor (``fstat``) and returns the text read from that same
descriptor, which is what gets compiled.  The directories are checked
after the open; as they are root's and closed to others, nobody else
could have changed them in between.

A daemon running unprivileged trusts whatever its own user may write; the
kernel already confines it.
"""

from __future__ import annotations

import os
import stat

from ..errors import PermissionDenied

__all__ = ["check_trusted", "read_plugin"]

#: Largest plugin file read; a plugin is a page or two of Python.
MAX_PLUGIN_BYTES = 16 * 1024 * 1024


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


def _refuse(path: str, problem: str) -> PermissionDenied:
    return PermissionDenied(f"plugin {path}: refused: {problem}")


def _check_ancestors(path: str, real: str) -> None:
    """Check every directory from ``real``'s parent up to ``/``."""
    child = real
    directory = os.path.dirname(real)
    while True:
        try:
            st = os.lstat(directory)
        except OSError as exc:
            raise _refuse(
                path, f"cannot stat directory {directory} ({exc.strerror})"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(path, f"{directory} is not a directory")
        problem = _problem(directory, st, "directory")
        if problem is not None and st.st_uid == 0 and st.st_mode & stat.S_ISVTX:
            # Sticky: others may create entries here but not replace ours;
            # what matters is that the next component is root's.
            try:
                owner = os.lstat(child).st_uid
            except OSError as exc:
                raise _refuse(path, f"cannot stat {child} ({exc.strerror})") from None
            problem = None
            if owner != 0:
                problem = (
                    f"{child} is owned by uid {owner} inside the sticky, "
                    f"world-writable directory {directory}; run chown root {child}"
                )
        if problem is not None:
            raise _refuse(path, problem)
        if directory == "/":
            return
        child, directory = directory, os.path.dirname(directory)


def _check_file(path: str, real: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, f"{real} is not a regular file")
    problem = _problem(real, st, "file")
    if problem is not None:
        raise _refuse(path, problem)


def read_plugin(path: str, *, trust: bool = True, euid: int | None = None) -> bytes:
    """Open the plugin file once, check it (as root) and return its text.

    Args:
        path: the plugin file (a symlink is resolved first).
        trust: apply the trust checks (only when ``euid`` is root).
        euid: the daemon's effective uid (default ``os.geteuid()``).

    Returns:
        The file's bytes, read from the descriptor that was checked.

    Raises:
        PermissionDenied: the file, or a directory on the way to it, could
            be changed by someone other than root; the message names it,
            says why and gives the command that fixes it.
        OSError: the file cannot be opened or read (errno kept).
    """
    check = trust and (os.geteuid() if euid is None else euid) == 0
    real = os.path.realpath(path)
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(real, flags)
    try:
        st = os.fstat(fd)
        if check:
            _check_file(path, real, st)
            _check_ancestors(path, real)
        elif not stat.S_ISREG(st.st_mode):
            raise _refuse(path, f"{real} is not a regular file")
        if st.st_size > MAX_PLUGIN_BYTES:
            raise _refuse(path, f"{real} is larger than {MAX_PLUGIN_BYTES >> 20} MiB")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_trusted(path: str, *, euid: int | None = None) -> None:
    """Refuse ``path`` if a non-root user could have changed it.

    A check only; the loader uses :func:`read_plugin`, which checks the
    very descriptor it reads.

    Raises:
        PermissionDenied: as :func:`read_plugin`; also when the file
            cannot be opened, with the reason.
    """
    if (os.geteuid() if euid is None else euid) != 0:
        return
    try:
        read_plugin(path, euid=0)
    except OSError as exc:
        raise _refuse(path, f"cannot open {path} ({exc.strerror})") from None
