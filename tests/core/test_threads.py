from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

import moduled as md

from .helpers import Recorder


def test_tells_from_a_foreign_thread_arrive_on_the_loop_thread_in_order():
    loop_threads = set()
    got: list[int] = []

    def evt(m, evs):
        loop_threads.add(threading.get_ident())
        got.extend(ev.data.message for ev in evs)
        if len(got) == 1000:
            m.ctx.quit()

    ctx = md.Context("threads")
    mod = ctx.register(Recorder("m", evt=evt))

    def worker():
        for i in range(1000):
            mod.tell(mod, i)

    ctx.register(
        Recorder("starter", start=lambda m: threading.Thread(target=worker).start())
    )
    ctx.loop()

    assert got == list(range(1000))
    assert loop_threads == {threading.get_ident()}


def test_foreign_calls_return_futures_with_results_and_errors(caplog):
    results: dict[str, object] = {}
    ready = threading.Event()

    def worker(ctx, mod):
        results["stats"] = mod.stats()
        results["bad"] = mod.tell("nobody", 1)
        results["ctx_lookup"] = ctx.lookup("m")
        results["state"] = mod.state
        ready.set()

    def start(m):
        threading.Thread(target=worker, args=(m.ctx, m)).start()

    def evt(m, evs):
        pass

    ctx = md.Context("futures")
    mod = ctx.register(Recorder("m", start=start, evt=evt))
    ctx.register(
        Recorder(
            "waiter",
            start=lambda m: m.tell(m, 0),
            evt=lambda m, e: m.ctx.quit() if ready.is_set() else m.tell(m, 0),
        )
    )
    ctx.loop()

    stats = results["stats"]
    assert isinstance(stats, Future)
    assert isinstance(stats.result(timeout=5), md.ModStats)
    assert results["bad"] is None  # tell from a thread is fire-and-forget...
    assert any("nobody" in r.getMessage() for r in caplog.records)  # ...but logged
    lookup = results["ctx_lookup"]
    assert isinstance(lookup, Future) and lookup.result(timeout=5) is mod
    assert results["state"] is md.ModState.RUNNING


def test_foreign_call_errors_reach_the_future():
    box: list[Future] = []
    ready = threading.Event()

    def worker(mod):
        box.append(mod.subscribe("a(b"))
        ready.set()

    ctx = md.Context("errs")
    ctx.register(
        Recorder(
            "m",
            start=lambda m: (
                threading.Thread(target=worker, args=(m,)).start(),
                m.tell(m, 0),
            )[1],
            evt=lambda m, e: m.ctx.quit() if ready.is_set() else m.tell(m, 0),
        )
    )
    ctx.loop()

    with pytest.raises(md.InvalidArgument, match="regular expression"):
        box[0].result(timeout=5)


def test_calls_before_looping_run_directly_on_any_thread():
    ctx = md.Context("direct", persist=True)
    mod = ctx.register(Recorder("m"))
    out = []

    t = threading.Thread(target=lambda: out.append(mod.stats()))
    t.start()
    t.join()

    assert isinstance(out[0], md.ModStats)
