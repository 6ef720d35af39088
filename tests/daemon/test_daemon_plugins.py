"""Plugins coming, changing, breaking and going in a running daemon."""

from __future__ import annotations

import os

import pytest

from .conftest import DaemonProc, wait_for, write, write_by_rename

TICKER = """
import moduled as md

class {cls}(md.Module):
    name = "{name}"

    def on_start(self):
        self.register(md.Timer(50_000_000))

    def on_evt(self, events):
        self.publish("{topic}", {{"n": len(events)}})
"""


def ticker(name: str, topic: str = "ticks") -> str:
    return TICKER.format(cls=name.title().replace("_", ""), name=name, topic=topic)


def running(d: DaemonProc, name: str) -> bool:
    m = d.module(name)
    return m is not None and m["state"] == "running"


def test_daemon_sends_ready_with_a_status_line(shared_daemon):
    ready = [g for g in shared_daemon.datagrams if "READY=1" in g.split("\n")]

    assert ready
    assert any(line.startswith("STATUS=") for line in ready[0].split("\n"))


def test_added_plugin_is_loaded_and_started(shared_daemon):
    write(shared_daemon.plugins / "added.py", ticker("added"))

    wait_for(lambda: running(shared_daemon, "added"), what="added running")

    plugin = shared_daemon.plugin("added")
    assert plugin["state"] == "loaded"
    assert plugin["error"] is None
    assert plugin["modules"] == ["added"]
    assert shared_daemon.module("added")["plugin"] == "added"


def test_plugin_changed_in_place_replaces_its_modules(shared_daemon):
    path = shared_daemon.plugins / "inplace.py"
    write(path, ticker("inplace_v1"))
    wait_for(lambda: running(shared_daemon, "inplace_v1"))

    write(path, ticker("inplace_v2"))

    wait_for(lambda: running(shared_daemon, "inplace_v2"), what="v2 running")
    assert shared_daemon.module("inplace_v1") is None
    assert shared_daemon.plugin("inplace")["loads"] >= 2


def test_plugin_renamed_into_place_replaces_its_modules(shared_daemon):
    path = shared_daemon.plugins / "renamed.py"
    write_by_rename(path, ticker("renamed_v1"))
    wait_for(lambda: running(shared_daemon, "renamed_v1"))

    write_by_rename(path, ticker("renamed_v2"))

    wait_for(lambda: running(shared_daemon, "renamed_v2"), what="v2 running")
    assert shared_daemon.module("renamed_v1") is None
    names = [p["name"] for p in shared_daemon.result("status")["plugins"]]
    assert not any(n.startswith(".") for n in names)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def broken(:\n", "SyntaxError"),
        ("import moduled_no_such_thing\n", "ModuleNotFoundError"),
        ("x = 1\n", "defines no moduled.Module subclass"),
    ],
)
def test_broken_plugin_is_failed_and_the_daemon_carries_on(
    shared_daemon, source, expected
):
    path = shared_daemon.plugins / "broken.py"
    write(path, source)

    plugin = wait_for(
        lambda: (
            (p := shared_daemon.plugin("broken"))
            and p["loads"]
            and p["error"]
            and expected in p["error"]
            and p
        ),
        what=f"broken plugin with {expected}",
    )

    assert plugin["state"] == "failed"
    assert "broken" in plugin["error"]
    assert shared_daemon.result("ping")["pong"] is True
    os.unlink(path)
    wait_for(lambda: shared_daemon.plugin("broken") is None)


def test_fixed_plugin_loads_after_being_broken(shared_daemon):
    path = shared_daemon.plugins / "fixed.py"
    write(path, "def nope(:\n")
    wait_for(lambda: (p := shared_daemon.plugin("fixed")) and p["state"] == "failed")

    write(path, ticker("fixed"))

    wait_for(lambda: running(shared_daemon, "fixed"), what="fixed running")
    assert shared_daemon.plugin("fixed")["error"] is None


RAISER = """
import moduled as md

class Raiser(md.Module):
    name = "{name}"

    def on_eval(self):
        if "{hook}" == "on_eval":
            raise RuntimeError("boom in on_eval")
        return True

    def on_start(self):
        if "{hook}" == "on_start":
            raise RuntimeError("boom in on_start")
        self.register(md.Timer(20_000_000), flags=md.SrcFlag.ONESHOT)

    def on_evt(self, events):
        if "{hook}" == "on_evt":
            raise RuntimeError("boom in on_evt")

    def on_stop(self):
        if "{hook}" == "on_stop":
            raise RuntimeError("boom in on_stop")
"""


@pytest.mark.parametrize("hook", ["on_eval", "on_start", "on_evt", "on_stop"])
def test_module_raising_in_a_hook_is_marked_failed_with_its_error(shared_daemon, hook):
    name = f"raise_{hook}"
    write(shared_daemon.plugins / f"{name}.py", RAISER.format(name=name, hook=hook))
    if hook == "on_stop":
        wait_for(lambda: running(shared_daemon, name))
        result = shared_daemon.ctl("stop", name)
        assert result.returncode == 0, result.stderr

    module = wait_for(
        lambda: (m := shared_daemon.module(name)) and m["state"] == "failed" and m,
        what=f"{name} failed",
    )

    assert f"boom in {hook}" in module["failure"]
    assert module["restart_in"] is None  # policy "never" from the config
    assert shared_daemon.plugin(name)["state"] == "loaded"
    assert shared_daemon.result("ping")["pong"] is True
    shown = shared_daemon.result("show", {"module": name})
    assert "RuntimeError" in shown["failure"]


def test_failing_module_is_restarted_with_backoff(shared_daemon):
    code = """
    import moduled as md

    class Flaky(md.Module):
        name = "flaky"

        def on_start(self):
            raise RuntimeError("flaky start")

        def on_evt(self, events):
            pass
    """
    write(shared_daemon.plugins / "flaky.py", code)

    module = wait_for(
        lambda: (m := shared_daemon.module("flaky")) and m["restarts"] >= 3 and m,
        what="three restarts",
    )

    assert module["state"] == "failed"
    assert "flaky start" in module["failure"]


def test_deleted_plugin_is_deregistered(shared_daemon):
    path = shared_daemon.plugins / "doomed.py"
    write(path, ticker("doomed"))
    wait_for(lambda: running(shared_daemon, "doomed"))

    os.unlink(path)

    wait_for(lambda: shared_daemon.module("doomed") is None, what="doomed gone")
    assert shared_daemon.plugin("doomed") is None


def test_plugin_settings_reach_the_module_as_config(shared_daemon):
    code = """
    import moduled as md

    class Configured(md.Module):
        def __init__(self, config):
            super().__init__(name="configured_" + config["greeting"])

        def on_start(self):
            self.publish("configured", dict(self.config))

        def on_evt(self, events):
            pass
    """
    write(shared_daemon.plugins / "configured.py", code)

    wait_for(lambda: running(shared_daemon, "configured_hello"), what="configured")


def test_plugin_whose_kernel_source_is_unavailable_fails_alone(shared_daemon):
    code = """
    import moduled as md

    class NoSuchProbe(md.Module):
        name = "no_such_probe"

        def on_start(self):
            self.register(md.Tracepoint("no_such_category", "no_such_event"))

        def on_evt(self, events):
            pass

    class Neighbour(md.Module):
        name = "neighbour"

        def on_evt(self, events):
            pass
    """
    write(shared_daemon.plugins / "nosuchprobe.py", code)

    module = wait_for(
        lambda: (m := shared_daemon.module("no_such_probe")) and m["failure"] and m,
        what="no_such_probe failed",
    )

    assert "no_such_category" in module["failure"]
    wait_for(lambda: running(shared_daemon, "neighbour"))
    assert shared_daemon.result("ping")["pong"] is True


def test_tail_streams_published_messages_matching_the_topic(shared_daemon):
    write(shared_daemon.plugins / "tailed.py", ticker("tailed", topic="tailed/tick"))
    wait_for(lambda: running(shared_daemon, "tailed"))
    s = shared_daemon.connect()
    f = s.makefile("rb")

    s.sendall(b'{"v":1,"id":"t","cmd":"tail","args":{"topic":"tailed/.*"}}\n')

    import json

    first = json.loads(f.readline())
    assert first["ok"] is True and first["result"]["streaming"] is True
    event = json.loads(f.readline())["event"]
    assert event["topic"] == "tailed/tick"
    assert event["sender"] == "tailed"
    assert event["message"]["n"] >= 1
    s.close()


def test_import_failure_is_logged_at_error_with_its_traceback(shared_daemon):
    code = """
    def helper_that_breaks():
        raise RuntimeError("kaboom at import")

    helper_that_breaks()
    """
    write(shared_daemon.plugins / "tracebacked.py", code)

    wait_for(
        lambda: (p := shared_daemon.plugin("tracebacked")) and p["state"] == "failed",
        what="tracebacked failed",
    )

    text = shared_daemon.log_text()
    start = text.index("ERROR moduled.daemon.plugins: plugin tracebacked: import")
    logged = text[start:]
    assert "Traceback (most recent call last)" in logged
    assert "helper_that_breaks" in logged.split("INFO", 1)[0]
    os.unlink(shared_daemon.plugins / "tracebacked.py")


@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "SystemExit(3)"])
def test_base_exception_at_import_fails_only_that_plugin(shared_daemon, exc):
    stem = "interrupts" if exc == "KeyboardInterrupt" else "exits"
    write(shared_daemon.plugins / f"{stem}.py", f"raise {exc}\n")

    plugin = wait_for(
        lambda: (p := shared_daemon.plugin(stem)) and p["state"] == "failed" and p,
        what=f"{stem} failed",
    )

    assert exc.split("(")[0] in plugin["error"]
    assert shared_daemon.proc.poll() is None
    assert shared_daemon.result("ping")["pong"] is True
    os.unlink(shared_daemon.plugins / f"{stem}.py")


def test_plugin_directory_created_after_start_is_picked_up(make_daemon, tmpbase):
    later = tmpbase / "later" / "deeper" / "plugins"
    d = make_daemon(args=("--plugins", str(later)))
    d.start()
    assert d.result("ping")["pong"] is True

    later.mkdir(parents=True)
    write(later / "late.py", ticker("late"))

    wait_for(lambda: running(d, "late"), what="late running")
    assert d.plugin("late")["path"] == str(later / "late.py")
    assert "no such directory; watching for it" in d.log_text()


def test_plugin_directory_moved_into_place_is_loaded(make_daemon, tmpbase):
    target = tmpbase / "moved_plugins"
    staging = tmpbase / "staging"
    staging.mkdir()
    write(staging / "moved.py", ticker("moved"))
    d = make_daemon(args=("--plugins", str(target)))
    d.start()

    os.rename(staging, target)

    wait_for(lambda: running(d, "moved"), what="moved running")
