"""Plugins cannot end or cripple the daemon that runs them."""

from __future__ import annotations

import signal

import pytest

from .conftest import wait_for, write

MEDDLER = """
import moduled as md

class Meddler(md.Module):
    name = "meddler"

    def on_start(self):
        self.ctx.lookup("{target}").{call}()

    def on_evt(self, events):
        pass
"""


@pytest.mark.parametrize("target", ["moduled", "moduled.tap"])
@pytest.mark.parametrize("call", ["stop", "pause"])
def test_plugin_cannot_stop_or_pause_the_daemons_own_modules(make_daemon, target, call):
    d = make_daemon("[plugins.meddler]\nrestart = 'never'\n")
    write(d.plugins / "meddler.py", MEDDLER.format(target=target, call=call))

    d.start()

    meddler = wait_for(lambda: (m := d.module("meddler")) and m["failure"] and m)
    assert "PermissionDenied" in meddler["failure"]
    assert "the daemon's own module" in meddler["failure"]
    assert d.module(target)["state"] == "running"
    assert d.result("ping")["pong"] is True
    d.signal(signal.SIGTERM)
    assert d.proc.wait(timeout=10) == 0


POISONER = """
import moduled as md

class Poisoner(md.Module):
    name = "poisoner"

    def on_start(self):
        self.register(md.Timer(50_000_000), flags=md.SrcFlag.ONESHOT)

    def on_evt(self, events):
        self.poisonpill("moduled")
        self.poisonpill("moduled.tap")
"""


def test_poisoned_daemon_modules_start_again_with_an_error_logged(make_daemon):
    d = make_daemon()
    write(d.plugins / "poisoner.py", POISONER)
    d.start()

    # The socket is gone for a moment, until the supervisor starts again.
    wait_for(lambda: d.log_text().count("control: listening on") == 2)
    revivals = d.result("status")["daemon"]["revivals"]

    assert revivals == {"moduled": 1, "moduled.tap": 1}
    assert d.module("moduled")["state"] == "running"
    text = d.log_text()
    assert "ERROR moduled.daemon.guard: daemon: module moduled was stopped" in text
    assert "module moduled.tap was stopped" in text
    d.signal(signal.SIGTERM)
    assert d.proc.wait(timeout=10) == 0
    assert "STOPPING=1" in d.wait_datagram("STOPPING=1")


QUITTER = """
import moduled as md

class Quitter(md.Module):
    name = "quitter"

    def on_start(self):
        self.register(md.Timer(20_000_000), flags=md.SrcFlag.ONESHOT)

    def on_evt(self, events):
        self.ctx.quit(7)
        self.publish("quitter/after", "still here")
"""


def test_plugin_quit_is_ignored_and_logged_with_the_module(make_daemon):
    d = make_daemon()
    write(d.plugins / "quitter.py", QUITTER)
    d.start()

    wait_for(lambda: d.result("status")["daemon"]["refused_quits"] == 1)

    assert d.proc.poll() is None
    assert d.result("ping")["pong"] is True
    text = d.log_text()
    assert (
        "WARNING moduled.daemon.guard: daemon: module 'quitter' of plugin quitter "
        "called ctx.quit(7)"
    ) in text
    assert "quitter.py:" in text
    d.signal(signal.SIGTERM)
    assert d.proc.wait(timeout=10) == 0


INTERRUPTER = """
import moduled as md

class Interrupter(md.Module):
    name = "{name}"

    def on_eval(self):
        if "{hook}" == "on_eval":
            raise KeyboardInterrupt
        return True

    def on_start(self):
        if "{hook}" == "on_start":
            raise KeyboardInterrupt
        self.register(md.Timer(20_000_000), flags=md.SrcFlag.ONESHOT)

    def on_evt(self, events):
        if "{hook}" == "on_evt":
            raise KeyboardInterrupt
        self.stop()

    def on_stop(self):
        if "{hook}" == "on_stop":
            raise KeyboardInterrupt
"""


@pytest.mark.parametrize("hook", ["on_eval", "on_start", "on_evt", "on_stop"])
def test_keyboard_interrupt_in_a_hook_fails_only_that_module(shared_daemon, hook):
    name = f"interrupt_{hook}"
    code = INTERRUPTER.format(name=name, hook=hook)

    write(shared_daemon.plugins / f"{name}.py", code)

    module = wait_for(
        lambda: (m := shared_daemon.module(name)) and m["failure"] and m,
        what=f"{name} failed",
    )
    assert "KeyboardInterrupt" in module["failure"]
    assert shared_daemon.proc.poll() is None
    assert shared_daemon.result("ping")["pong"] is True
