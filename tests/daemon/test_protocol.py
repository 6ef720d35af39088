"""The JSON-lines control protocol: what is a request, what is a reply."""

from __future__ import annotations

import json

import pytest

from moduled.daemon.protocol import (
    MAX_LINE,
    ProtocolError,
    decode_reply,
    decode_request,
    error_reply,
    event_line,
    ok_reply,
    request_line,
)


def test_request_line_round_trips():
    line = request_line(3, "pause", {"module": "ticker"})

    req = decode_request(line)

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert (req.id, req.cmd, req.args) == (3, "pause", {"module": "ticker"})


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", "bad_request"),
        (b"[1]", "bad_request"),
        (b'{"id": 1, "cmd": "status"}', "bad_request"),
        (b'{"v": 2, "id": 1, "cmd": "status"}', "unsupported_version"),
        (b'{"v": 1, "id": 1}', "bad_request"),
        (b'{"v": 1, "id": 1, "cmd": "rm -rf"}', "unknown_command"),
        (b'{"v": 1, "id": 1, "cmd": "show", "args": [1]}', "bad_request"),
        (b'{"v": 1, "id": {"x": 1}, "cmd": "status"}', "bad_request"),
        (b"\xff\xfe", "bad_request"),
        (b'{"v": true, "id": 1, "cmd": "status"}', "unsupported_version"),
        (b'{"v": 1.0, "id": 1, "cmd": "status"}', "unsupported_version"),
        (b'{"v": "1", "id": 1, "cmd": "status"}', "unsupported_version"),
        (b'{"v": 1, "id": 1e400, "cmd": "status"}', "bad_request"),
        (b'{"v": 1, "id": NaN, "cmd": "status"}', "bad_request"),
        (b'{"v": 1, "id": 1, "cmd": "show", "args": {"x": -Infinity}}', "bad_request"),
    ],
)
def test_invalid_request_raises_with_its_error_code(line, code):
    with pytest.raises(ProtocolError) as info:
        decode_request(line)

    assert info.value.code == code


def test_error_keeps_the_request_id_when_it_was_readable():
    with pytest.raises(ProtocolError) as info:
        decode_request(b'{"v": 7, "id": "abc", "cmd": "status"}')

    assert info.value.id == "abc"


def test_replies_decode_and_carry_the_version():
    ok = decode_reply(ok_reply(1, {"a": {1, 2}}))
    err = decode_reply(error_reply(2, "not_found", "x: no such module"))
    ev = decode_reply(event_line(3, {"topic": "t"}))

    assert ok == {"v": 1, "id": 1, "ok": True, "result": {"a": [1, 2]}}
    assert err["error"] == {"code": "not_found", "message": "x: no such module"}
    assert ev["event"] == {"topic": "t"}


def test_reply_without_ok_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode_reply(json.dumps({"v": 1, "id": 1}).encode())


def test_max_line_is_64_kib():
    assert MAX_LINE == 65536


def test_replies_are_strict_json_even_with_non_finite_floats():
    line = ok_reply(1, {"ratio": float("nan"), "big": [float("inf"), 2.5]})

    text = line.decode()

    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["result"] == {"ratio": None, "big": [None, 2.5]}
    assert decode_reply(line)["ok"] is True
