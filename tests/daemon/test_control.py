"""The control socket under abuse: garbage, huge lines, silence, crowds."""

from __future__ import annotations

import json
import os
import pwd
import select
import socket
import subprocess

import pytest

from .conftest import PY, wait_for


def read_reply(s: socket.socket) -> dict:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return json.loads(buf.splitlines()[0])


def test_garbage_gets_an_error_reply_and_status_still_answers(shared_daemon):
    s = shared_daemon.connect()

    s.sendall(b"\xff\xfe this is not json\n")
    garbage = read_reply(s)
    s.sendall(b'{"v": 1, "id": 5, "cmd": "launch-missiles"}\n')
    unknown = read_reply(s)
    s.sendall(b'{"v": 9, "id": 6, "cmd": "status"}\n')
    version = read_reply(s)
    s.sendall(b'[1, 2, 3]\n{"v": 1, "id": 7, "cmd": "show", "args": {}}\n')
    not_object = read_reply(s)

    assert garbage["ok"] is False and garbage["error"]["code"] == "bad_request"
    assert unknown["error"]["code"] == "unknown_command" and unknown["id"] == 5
    assert version["error"]["code"] == "unsupported_version" and version["id"] == 6
    assert not_object["error"]["code"] == "bad_request"
    s.close()
    assert shared_daemon.result("status")["daemon"]["ready"] is True


def test_last_request_without_newline_is_answered_after_half_close(shared_daemon):
    s = shared_daemon.connect()

    s.sendall(b'{"v": 1, "id": 41, "cmd": "ping"}\n{"v": 1, "id": 42, "cmd": "ping"}')
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()

    replies = [json.loads(line) for line in data.splitlines()]
    assert [r["id"] for r in replies] == [41, 42]
    assert all(r["ok"] for r in replies)


def test_non_finite_id_is_refused_with_valid_json(shared_daemon):
    s = shared_daemon.connect()

    s.sendall(b'{"v": 1, "id": 1e400, "cmd": "ping"}\n')
    raw = s.recv(65536)
    s.close()

    assert b"Infinity" not in raw
    reply = json.loads(raw.splitlines()[0])
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"


def test_oversized_request_is_refused_and_the_connection_closed(shared_daemon):
    s = shared_daemon.connect()

    s.sendall(b"x" * (70 * 1024))
    reply = read_reply(s)

    assert reply["error"]["code"] == "too_large"
    s.settimeout(5)
    assert s.recv(1) == b""  # closed by the daemon
    s.close()
    assert shared_daemon.result("ping")["pong"] is True


def test_half_open_client_is_dropped_after_the_request_timeout(shared_daemon):
    silent = shared_daemon.connect()
    partial = shared_daemon.connect()
    partial.sendall(b'{"v": 1, "id": 1, "cmd": "sta')

    # Both hold connections open; others are served meanwhile.
    assert shared_daemon.result("status")["daemon"]["clients"] >= 3

    silent.settimeout(10)
    reply = read_reply(silent)
    assert reply["error"]["code"] == "timeout"
    partial.settimeout(10)
    assert read_reply(partial)["error"]["code"] == "timeout"
    assert silent.recv(1) == b""
    silent.close()
    partial.close()


def test_half_closed_client_still_gets_its_reply(shared_daemon):
    s = shared_daemon.connect()

    s.sendall(b'{"v": 1, "id": "hc", "cmd": "ping"}\n')
    s.shutdown(socket.SHUT_WR)

    reply = read_reply(s)
    assert reply["ok"] is True and reply["id"] == "hc"
    s.close()


def test_slow_reader_does_not_delay_other_clients(shared_daemon):
    slow = shared_daemon.connect()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    line = b'{"v": 1, "id": 1, "cmd": "status"}\n'

    # Many pipelined requests whose replies it never reads.
    slow.sendall(line * 200)

    for _ in range(5):
        assert shared_daemon.result("ping")["pong"] is True
    slow.close()


def test_200_concurrent_status_queries_all_answer(shared_daemon):
    clients = [shared_daemon.connect() for _ in range(200)]
    for i, s in enumerate(clients):
        s.sendall(json.dumps({"v": 1, "id": i, "cmd": "status"}).encode() + b"\n")

    pending = {s.fileno(): (i, s, b"") for i, s in enumerate(clients)}
    replies = {}
    while pending:
        ready, _, _ = select.select(list(pending), [], [], 10)
        assert ready, f"{len(pending)} replies missing"
        for fd in ready:
            i, s, buf = pending[fd]
            buf += s.recv(1 << 20)
            if buf.endswith(b"\n"):
                replies[i] = json.loads(buf)
                del pending[fd]
            else:
                pending[fd] = (i, s, buf)

    assert len(replies) == 200
    assert all(r["ok"] and r["id"] == i for i, r in replies.items())
    assert all("modules" in r["result"] for r in replies.values())
    for s in clients:
        s.close()


def _nobody() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user to connect as")
    return pw.pw_uid, pw.pw_gid


@pytest.mark.root
def test_group_member_may_query_but_not_change_state(make_daemon):
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    uid, gid = _nobody()
    import grp

    group = grp.getgrgid(gid).gr_name
    d = make_daemon(f'[daemon]\ngroup = "{group}"\n').start()

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [PY, "-m", "moduled.cli.modulectl", "--socket", d.sock_path, *args]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=30,
            user=uid,
            group=gid,
            extra_groups=[],
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": _pythonpath()},
        )

    status = as_nobody("status")
    pause = as_nobody("pause", "moduled.tap")

    assert status.returncode == 0, status.stderr
    assert "moduled.tap" in status.stdout
    assert pause.returncode == 4
    assert "only root may change" in pause.stderr
    assert os.stat(d.sock_path).st_mode & 0o777 == 0o660
    assert os.stat(d.sock_path).st_gid == gid


def _pythonpath() -> str:
    import moduled

    return os.path.dirname(os.path.dirname(moduled.__file__))


def test_tail_client_that_goes_away_stops_the_tap(shared_daemon):
    s = shared_daemon.connect()
    s.sendall(b'{"v":1,"id":1,"cmd":"tail","args":{"topic":"nothing/.*"}}\n')
    assert read_reply(s)["ok"] is True
    wait_for(lambda: shared_daemon.result("status")["daemon"]["tails"] == 1)

    s.close()

    wait_for(lambda: shared_daemon.result("status")["daemon"]["tails"] == 0)
