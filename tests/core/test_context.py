from __future__ import annotations

import asyncio
import os
import selectors
import subprocess
import sys
import threading

import pytest

import moduled as md

from .helpers import Recorder


class Quitter(md.Module):
    def __init__(self, name="quitter", code=0, **kw):
        super().__init__(name, **kw)
        self.code = code

    def on_start(self):
        self.tell(self, "bye")

    def on_evt(self, events):
        self.ctx.quit(self.code)


def test_loop_returns_the_quit_code():
    ctx = md.Context("ctx")
    ctx.register(Quitter(code=42))

    assert ctx.loop() == 42


def test_loop_returns_when_no_module_is_running():
    ctx = md.Context("ctx")
    ctx.register(Recorder("r", start=lambda m: False))

    assert ctx.loop() == 0
    assert ctx.lookup("r").state is md.ModState.STOPPED


def test_register_lookup_and_modules_mapping():
    ctx = md.Context("ctx")
    a = ctx.register(Recorder("a"))
    b = ctx.register(Recorder("b"))

    assert ctx.lookup("a") is a
    assert ctx.lookup("missing") is None
    assert list(ctx.modules) == ["a", "b"]
    assert ctx.modules["b"] is b
    with pytest.raises(TypeError):
        ctx.modules["c"] = b  # type: ignore[index]


def test_register_rejects_duplicates_and_non_modules():
    ctx = md.Context("ctx")
    ctx.register(Recorder("a"))

    with pytest.raises(md.AlreadyRegistered, match="'a'"):
        ctx.register(Recorder("a"))
    with pytest.raises(md.InvalidArgument):
        ctx.register("a")  # type: ignore[arg-type]

    class NoSuper(md.Module):
        def __init__(self):
            pass

    with pytest.raises(md.InvalidArgument, match="super"):
        ctx.register(NoSuper())


def test_allow_replace_replaces_the_old_module():
    ctx = md.Context("ctx")
    old = ctx.register(Recorder("a", flags=md.ModFlag.ALLOW_REPLACE))
    new = ctx.register(Recorder("a"))

    assert ctx.lookup("a") is new
    assert old.state is md.ModState.ZOMBIE


def test_deregistered_module_is_a_zombie():
    ctx = md.Context("ctx", persist=True)
    mod = ctx.register(Recorder("a"))
    ctx.deregister("a")

    assert mod.state is md.ModState.ZOMBIE
    assert mod.is_(md.ModState.ZOMBIE)
    assert mod.name == "a"
    with pytest.raises(md.StateError, match="zombie"):
        mod.tell("a", 1)
    with pytest.raises(md.StateError):
        mod.stats()
    with pytest.raises(md.NotFound):
        ctx.deregister("a")


def test_persist_flag_forbids_deregistration_while_looping():
    errors = []

    def start(m):
        try:
            m.ctx.deregister("keeper")
        except md.PermissionDenied as exc:
            errors.append(exc)
        m.ctx.quit()

    ctx = md.Context("ctx")
    ctx.register(Recorder("keeper", flags=md.ModFlag.PERSIST))
    ctx.register(Recorder("killer", start=start))
    ctx.loop()

    assert len(errors) == 1
    ctx.deregister("keeper")


def test_finalize_refuses_registrations():
    ctx = md.Context("ctx")
    ctx.finalize()

    with pytest.raises(md.PermissionDenied, match="finalized"):
        ctx.register(Recorder("a"))


def test_non_persistent_context_is_finished_when_empty_after_loop():
    ctx = md.Context("ctx")
    ctx.register(Quitter())
    ctx.loop()
    ctx.deregister("quitter")
    ctx.register(Quitter())  # not finished yet: it had a module at loop exit
    ctx.loop()

    empty = md.Context("empty")
    assert empty.loop() == 0
    with pytest.raises(md.StateError, match="finished"):
        empty.register(Recorder("a"))

    kept = md.Context("kept", persist=True)
    kept.loop()
    kept.register(Quitter())
    assert kept.loop() == 0


def test_loop_thread_is_named_after_the_context():
    seen = []

    def start(m):
        tid = threading.get_native_id()
        with open(f"/proc/self/task/{tid}/comm") as f:
            seen.append(f.read().strip())
        return False

    ctx = md.Context("a-very-long-context-name")
    ctx.register(Recorder("r", start=start))
    ctx.loop()

    assert seen == ["a-very-long-con"]
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        assert f.read().strip() != "a-very-long-con"


def test_dispatch_from_selectors_drives_the_context():
    ctx = md.Context("sel")
    rec = ctx.register(
        Recorder(
            "r",
            start=lambda m: m.tell(m, "ping"),
            evt=lambda m, evs: m.ctx.quit(3),
        )
    )
    sel = selectors.DefaultSelector()
    sel.register(ctx.fileno(), selectors.EVENT_READ)

    rounds = 0
    while rounds < 100:
        events = sel.select(timeout=1)
        assert events, "context fd never became readable"
        ctx.dispatch()
        rounds += 1
        if rounds > 1 and not ctx.looping:
            break

    assert rec.messages == ["ping"]
    assert not ctx.looping


def test_asyncio_add_reader_drives_the_context():
    async def main():
        ctx = md.Context("aio")
        got = []

        def evt(m, evs):
            got.extend(ev.data.message for ev in evs)
            if len(got) == 3:
                m.ctx.quit()

        ctx.register(Recorder("r", start=lambda m: m.tell(m, 1), evt=evt))
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_ready():
            ctx.dispatch()
            if not ctx.looping:
                loop.remove_reader(ctx.fileno())
                done.set_result(True)

        loop.add_reader(ctx.fileno(), on_ready)
        loop.call_later(0.01, lambda: ctx.lookup("r").tell("r", 2))
        loop.call_later(0.02, lambda: ctx.lookup("r").tell("r", 3))
        await asyncio.wait_for(done, 5)
        return got

    assert asyncio.run(main()) == [1, 2, 3]


def test_set_tick_publishes_ctx_tick():
    ticks = []

    def evt(m, evs):
        ticks.extend(ev.data.topic for ev in evs)
        if len(ticks) >= 3:
            m.ctx.quit()

    ctx = md.Context("tick")
    ctx.set_tick(5_000_000)
    ctx.register(Recorder("r", start=lambda m: m.subscribe(md.CTX_TICK), evt=evt))
    ctx.loop()

    assert len(ticks) >= 3
    assert set(ticks) == {md.CTX_TICK}
    with pytest.raises(md.InvalidArgument):
        ctx.set_tick(-1)


def test_ctx_started_and_stopped_are_published():
    topics = []

    def start(m):
        m.subscribe("MODULED_CTX_.*")

    def evt(m, evs):
        topics.extend(ev.data.topic for ev in evs)
        if md.CTX_STARTED in topics and len(topics) == 1:
            m.ctx.quit()

    ctx = md.Context("sys")
    ctx.register(Recorder("r", start=start, evt=evt))
    ctx.loop()

    assert topics == [md.CTX_STARTED, md.CTX_STOPPED]


def test_loop_exit_stops_modules_and_flushes_pending_messages():
    got = []

    def start(m):
        for i in range(3):
            m.tell("sink", i)
        m.ctx.quit(0)

    ctx = md.Context("flush")
    sink = ctx.register(Recorder("sink", evt=lambda m, evs: got.extend(evs)))
    ctx.register(Recorder("src", start=start))
    ctx.loop()

    assert [ev.data.message for ev in got] == [0, 1, 2]
    assert sink.state is md.ModState.STOPPED


def test_stats_and_dump_are_consistent_and_json_serialisable():
    import json

    ctx = md.Context("stats")
    ctx.register(Quitter())
    ctx.loop()
    stats = ctx.stats()
    dump = ctx.dump()

    assert stats.num_modules == 1
    assert stats.recv_msgs == 1
    assert stats.total_looping_time > 0
    assert 0.0 <= stats.activity_freq <= 1.0
    assert dump["modules"][0]["name"] == "quitter"
    json.dumps(dump)


def test_quit_from_another_thread_wakes_a_blocked_loop():
    ctx = md.Context("blocked")
    ctx.register(Recorder("r"))
    timer = threading.Timer(0.05, ctx.quit, args=(9,))
    timer.start()

    assert ctx.loop() == 9


def test_hostile_context_arguments_raise_typed_errors():
    with pytest.raises(md.InvalidArgument):
        md.Context("")
    ctx = md.Context("c")
    with pytest.raises(md.InvalidArgument):
        ctx.quit("1")  # type: ignore[arg-type]
    with pytest.raises(md.InvalidArgument):
        ctx.lookup(3)  # type: ignore[arg-type]
    with pytest.raises(md.NotFound):
        ctx.deregister("nobody")
    with pytest.raises(md.InvalidArgument):
        ctx.deregister(3.5)  # type: ignore[arg-type]


def test_logging_environment_sets_levels_and_output(tmp_path):
    out = tmp_path / "log.txt"
    code = (
        "import logging, moduled as md\n"
        "assert logging.getLogger('moduled').level == logging.INFO\n"
        "assert logging.getLogger('moduled.kernel').level == logging.DEBUG\n"
        "logging.getLogger('moduled.core').info('hello: from core')\n"
        "md.set_loglevel('error', 'daemon')\n"
        "assert logging.getLogger('moduled.daemon').level == logging.ERROR\n"
        "try:\n"
        "    md.set_loglevel('loud')\n"
        "except md.InvalidArgument:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    env = dict(
        os.environ,
        MODULED_LOG="info",
        MODULED_LOG_KERNEL="debug",
        MODULED_LOG_OUTPUT=str(out),
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)

    assert "hello: from core" in out.read_text()


def test_library_adds_only_a_null_handler():
    code = (
        "import logging, moduled\n"
        "print([type(h).__name__ for h in logging.getLogger('moduled').handlers])\n"
        "print(logging.getLogger().handlers)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODULED_LOG")}

    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["['NullHandler']", "[]"]


def test_bad_logging_environment_warns_but_never_breaks_import(tmp_path):
    code = (
        "import logging, moduled\n"
        "logging.getLogger('moduled.core').debug('core: shown on stderr')\n"
        "print(logging.getLogger('moduled').level)\n"
    )
    env = dict(
        os.environ,
        MODULED_LOG="debug",
        MODULED_LOG_SOURCES="verbose",
        MODULED_LOG_OUTPUT="stderr",
    )
    ok = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    env["MODULED_LOG_OUTPUT"] = str(tmp_path / "missing" / "log.txt")
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)

    assert ok.returncode == 0 and ok.stdout.strip() == b"10"
    assert b"core: shown on stderr" in ok.stderr
    assert b"MODULED_LOG_SOURCES" in ok.stderr and b"RuntimeWarning" in ok.stderr
    assert bad.returncode == 0
    assert b"cannot open" in bad.stderr
