"""``tail`` (messages and kernel events, only while someone tails) and READY
after the probes are attached."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest

from .conftest import PY, require_ebpf, wait_for, write
from .test_stock_plugins import Tail

EXEC_WATCH = """
import moduled as md

class ExecWatch(md.Module):
    name = "execwatch"

    def on_start(self):
        self.register(md.ProcEvents(kinds=("exec",)))

    def on_evt(self, events):
        pass
"""

DIR_WATCH = """
import moduled as md

class DirWatch(md.Module):
    name = "dirwatch"

    def on_start(self):
        self.register(md.Path("{path}", md.IN_CREATE))
        self.publish("dirwatch/up", {{"watching": "{path}"}})

    def on_evt(self, events):
        pass
"""


@pytest.mark.kernel
def test_tail_streams_proc_connector_events_as_kernel_topics(make_daemon):
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_NET_ADMIN for the proc connector)")
    d = make_daemon()
    write(d.plugins / "execwatch.py", EXEC_WATCH)
    d.start()
    wait_for(lambda: (m := d.module("execwatch")) and m["state"] == "running")
    tail = Tail(d, "kernel/execwatch/.*")

    child = subprocess.Popen(["/bin/true"])
    child.wait()

    event = tail.find(
        lambda e: e["message"]["kind"] == "exec" and e["message"]["tgid"] == child.pid
    )
    assert event["kind"] == "kernel"
    assert event["topic"] == "kernel/execwatch/proc"
    assert event["sender"] == "execwatch"
    assert event["type"] == "proc"
    assert isinstance(event["message"]["pid"], int)
    tail.close()


def test_tail_streams_messages_and_path_events_matching_the_pattern(
    make_daemon, tmpbase
):
    watched = tmpbase / "watched"
    watched.mkdir()
    d = make_daemon()
    write(d.plugins / "dirwatch.py", DIR_WATCH.format(path=watched))
    d.start()
    wait_for(lambda: (m := d.module("dirwatch")) and m["state"] == "running")
    tail = Tail(d, "kernel/dirwatch/.*|dirwatch/.*")
    cmd = [PY, "-m", "moduled.cli.modulectl", "--socket", d.sock_path]
    human = subprocess.Popen(
        [*cmd, "tail", "kernel/dirwatch/.*"], stdout=subprocess.PIPE, text=True
    )
    wait_for(lambda: d.result("status")["daemon"]["tails"] == 2)

    (watched / "new-file").write_text("x")
    d.ctl("reload", "dirwatch")

    event = tail.find(lambda e: e["kind"] == "kernel")
    assert event["topic"] == "kernel/dirwatch/path"
    assert event["message"]["name"] == "new-file"
    assert event["message"]["path"] == str(watched)
    message = tail.find(lambda e: e["kind"] == "message")
    assert message["topic"] == "dirwatch/up"
    assert message["message"] == {"watching": str(watched)}
    line = human.stdout.readline()
    human.send_signal(signal.SIGINT)
    assert human.wait(timeout=10) == 0
    assert " kernel/dirwatch/path dirwatch " in line
    assert json.loads(line.split(" dirwatch ", 1)[1])["name"] == "new-file"
    tail.close()


def test_kernel_events_are_observed_only_while_someone_tails(make_daemon, tmpbase):
    d = make_daemon()
    write(d.plugins / "dirwatch.py", DIR_WATCH.format(path=tmpbase))
    d.start()
    before = d.result("status")["daemon"]["tap_observing"]

    tail = Tail(d, "kernel/.*")
    during = wait_for(lambda: d.result("status")["daemon"]["tap_observing"])
    tail.close()

    wait_for(lambda: d.result("status")["daemon"]["tails"] == 0)
    assert before is False
    assert during is True
    assert d.result("status")["daemon"]["tap_observing"] is False


EXEC_PROBE = """
import moduled as md

class ExecProbe(md.Module):
    name = "execprobe"

    def on_start(self):
        self.register(md.Tracepoint("sched", "sched_process_exec", fields=["filename"]))

    def on_evt(self, events):
        for ev in events:
            if ev.data.fields["filename"].endswith("ready_marker"):
                with open("{seen}", "a") as f:
                    f.write(ev.data.fields["filename"] + "\\n")
"""


@pytest.mark.kernel
def test_ready_comes_after_the_probes_are_attached(make_daemon, tmpbase):
    require_ebpf()
    seen = tmpbase / "seen.txt"
    marker = tmpbase / "ready_marker"
    shutil.copy("/bin/true", marker)
    d = make_daemon()
    write(d.plugins / "execprobe.py", EXEC_PROBE.format(seen=seen))

    d.start()
    subprocess.run([str(marker)], check=True)

    ready = next(g for g in d.datagrams if "READY=1" in g.split("\n"))
    assert "1/1 probes attached" in ready
    probes = d.result("probes")
    assert [p["state"] for p in probes] == ["attached"]
    wait_for(lambda: seen.exists() and str(marker) in seen.read_text())
