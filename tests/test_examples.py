from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_echo_example_echoes_until_q():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo.py")],
        input="hello\nworld\nq\nnever echoed\n",
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert out.returncode == 0
    assert out.stdout.splitlines() == ["echo: hello", "echo: world"]


def test_echo_example_quits_cleanly_on_eof_and_keeps_the_last_line():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo.py")],
        input="one\ntwo",
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert out.returncode == 0
    assert out.stdout.splitlines() == ["echo: one", "echo: two"]
    assert out.stderr == ""


def test_echo_example_sleeps_until_input_is_ready():
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        proc.stdin.write("first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "echo: first\n"

        before = cpu_ticks(proc.pid)
        time.sleep(0.5)
        after = cpu_ticks(proc.pid)
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

        proc.stdin.write("q\n")
        proc.stdin.flush()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert state == "S"
    assert after - before <= 2  # clock ticks of 10 ms: asleep, not polling


def test_foreign_loop_example_runs_under_asyncio():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "foreign_loop.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ),
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ticks: 5, notes from asyncio: 3"


def test_the_readme_module_example_runs(tmp_path):
    readme = (EXAMPLES.parent / "README.md").read_text()
    start = readme.index("```python\n") + len("```python\n")
    script = tmp_path / "readme_example.py"
    script.write_text(readme[start : readme.index("```", start)])

    out = subprocess.run(
        [sys.executable, str(script)],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert out.returncode == 0, out.stderr
    assert "echo says hello" in out.stderr
