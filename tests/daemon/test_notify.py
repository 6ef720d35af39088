"""sd_notify datagrams on real Unix sockets, path and abstract."""

from __future__ import annotations

import os
import socket

from moduled.daemon.notify import Notifier


def _receiver(address: str | bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_ready_reaches_a_path_socket(tmp_path):
    path = str(tmp_path / "notify")
    rx = _receiver(path)

    sent = Notifier({"NOTIFY_SOCKET": path}).ready("3 modules")

    assert sent
    assert rx.recv(4096) == b"READY=1\nSTATUS=3 modules"


def test_abstract_address_is_written_with_an_at_sign():
    name = f"moduled-test-{os.getpid()}"
    rx = _receiver(b"\0" + name.encode())

    Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()

    assert rx.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier({})

    assert notifier.enabled is False
    assert notifier.ready("x") is False


def test_watchdog_interval_is_half_the_managers_timeout():
    pid = str(os.getpid())

    mine = Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid})
    other = Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})

    assert mine.watchdog_ns == 15_000_000_000
    assert other.watchdog_ns == 0


def test_full_manager_queue_never_blocks(tmp_path):
    path = str(tmp_path / "notify")
    rx = _receiver(path)
    notifier = Notifier({"NOTIFY_SOCKET": path})

    results = [notifier.status("x" * 1000) for _ in range(5000)]

    assert results[0] is True
    assert results[-1] is False  # dropped, not blocked
    rx.close()
