"""The systemd notification protocol (``sd_notify``), spoken directly.

systemd hands a ``Type=notify`` service the address of a datagram socket in
``$NOTIFY_SOCKET``: a filesystem path, or an abstract address written with a
leading ``@`` (the kernel's leading NUL byte).  Each datagram is a set of
``KEY=VALUE`` lines: ``READY=1`` once the service is up, ``STATUS=...`` for
``systemctl status``, ``RELOADING=1`` / ``READY=1`` around a reload,
``STOPPING=1`` on the way out and ``WATCHDOG=1`` at least once per
``$WATCHDOG_USEC`` when ``WatchdogSec=`` is set.  ``$WATCHDOG_PID``, when
present, names the process the watchdog is meant for; a child that merely
inherited the environment must not ping it.

Without ``$NOTIFY_SOCKET`` (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Send state changes to the service manager, if there is one.

    Reads the environment once, at construction.  Loop-thread only.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address: str | bytes | None = None
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            self._address = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self._address = address
        elif address:
            log.warning("notify: ignoring NOTIFY_SOCKET %r: not a path", address)
        self._sock: socket.socket | None = None
        self._watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self._watchdog_usec = int(usec)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._address is not None

    @property
    def watchdog_ns(self) -> int:
        """How often to send ``WATCHDOG=1``: half the manager's timeout, or 0."""
        return self._watchdog_usec * 1000 // 2

    def send(self, **fields: object) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; keys are upper-cased.

        ``send(ready=1, status="up")`` sends ``READY=1\\nSTATUS=up``.
        Returns whether it was sent; failures are logged, never raised: the
        service must not die because its manager went away.
        """
        if self._address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")
            lines.append(f"{key.upper()}={text}")
        payload = "\n".join(lines).encode()
        try:
            if self._sock is None:
                # Non-blocking: a manager that stopped reading (its queue is
                # full) must not stall the loop; the datagram is dropped.
                self._sock = socket.socket(
                    socket.AF_UNIX,
                    socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                )
            self._sock.sendto(payload, self._address)
        except BlockingIOError:
            log.debug("notify: manager's queue is full; dropped %s", lines[:1])
            return False
        except OSError as exc:
            log.warning("notify: cannot send %s: %s", lines[0] if lines else "", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        """Tell the manager start-up (or a reload) is complete."""
        return self.send(ready=1, status=status)

    def reloading(self) -> bool:
        """Tell the manager a reload started (systemd 253 and later)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(reloading=1, monotonic_usec=usec, status="reloading")

    def stopping(self) -> bool:
        """Tell the manager the service is shutting down."""
        return self.send(stopping=1, status="stopping")

    def watchdog(self) -> bool:
        """Keep the manager's watchdog from firing."""
        return self.send(watchdog=1)

    def status(self, text: str) -> bool:
        """Update the one-line status shown by ``systemctl status``."""
        return self.send(status=text)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
