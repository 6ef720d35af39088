"""moduled doctor: the screen, the JSON document and the exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests.conftest import need_root

from moduled.kernel import doctor

pytestmark = pytest.mark.kernel

NOBODY = 65534


def test_json_lists_every_check_in_order_with_required_marks(capsys):
    code = doctor.main(["--json"])

    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"ok", "required", "checks"}
    assert [c["name"] for c in doc["checks"]] == list(doctor.CHECKS)
    for c in doc["checks"]:
        assert set(c) == {"name", "ok", "required", "detail", "remedy"}
        assert isinstance(c["ok"], bool) and isinstance(c["detail"], str)
        assert c["required"] == (c["name"] in doctor.REQUIRED)
        assert c["ok"] or c["remedy"]
    assert sorted(doc["required"]) == doc["required"]
    required_ok = all(c["ok"] for c in doc["checks"] if c["required"])
    assert doc["ok"] is required_ok
    assert code == (0 if required_ok else 1)


def test_the_screen_has_a_line_per_check_and_a_verdict(capsys):
    code = doctor.main([])

    lines = capsys.readouterr().out.splitlines()
    firsts = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert firsts == [*doctor.CHECKS, "doctor"]
    assert lines[-1].split(None, 1)[1] == (
        "ready" if code == 0 else "NOT READY (a required check failed)"
    )
    for i, line in enumerate(lines[:-1]):
        if " MISSING " in line or "missing (optional)" in line:
            assert lines[i + 1].lstrip().startswith("-> ")


def test_missing_kprobes_are_optional_and_do_not_fail_the_doctor(capsys):
    need_root()
    kprobes = doctor.check_kprobes()

    code = doctor.main([])

    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("kprobes "))
    if kprobes.ok:
        assert " ok " in line
    else:
        assert "missing (optional)" in line and "CONFIG_KPROBES" in line
    required = [c for c in doctor.check() if c.name in doctor.REQUIRED]
    assert code == (0 if all(c.ok for c in required) else 1)


def test_an_unprivileged_user_gets_exit_status_1_and_the_remedies():
    need_root()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    out = subprocess.run(
        [sys.executable, "-m", "moduled.kernel.doctor", "--json"],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["ok"] is False
    assert not checks["privileges"]["ok"]
    assert "CAP_BPF" in checks["privileges"]["remedy"]
    assert "not readable" in checks["tracefs"]["detail"]


def test_a_usage_error_exits_with_status_2():
    with pytest.raises(SystemExit) as info:
        doctor.main(["--bogus"])

    assert info.value.code == 2
