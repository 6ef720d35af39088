"""Message throughput of the runtime, side by side with baselines.

Workloads, all through a real Context loop:
  1. self-tell: one module keeps 10,000 messages in flight to itself until
     1,000,000 were delivered;
  2. ping-pong: 100,000 round trips between two modules;
  3. publish: one topic with 10 subscribers among 1,000 modules;
  4. scaling: a tell with 1 and with 10,000 modules registered, and an exact
     publish with 10 and with 10,000 unrelated regex subscriptions.
Baselines in the same run: an unbounded asyncio.Queue producer/consumer and
Pykka threading actors (the ``bench`` extra installs Pykka) doing the same
work: an actor keeping 10,000 tells to itself in flight, and two actors
telling each other back and forth.

Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import moduled as md

SELF_TELLS = 1_000_000
WINDOW = 10_000
ROUND_TRIPS = 100_000
PUBLISHES = 100_000


def bench_self_tell(n: int = SELF_TELLS) -> tuple[float, int]:
    class Self(md.Module):
        def on_start(self) -> None:
            self.got = 0
            self.sent = min(WINDOW, n)
            for _ in range(self.sent):
                self.tell(self, 1)

        def on_evt(self, events: list[md.Event]) -> None:
            self.got += len(events)
            more = min(len(events), n - self.sent)
            tell = self.tell
            for _ in range(more):
                tell(self, 1)
            self.sent += more
            if self.got >= n:
                self.ctx.quit(0)

    ctx = md.Context("bench-self")
    mod = ctx.register(Self("self"))
    t0 = time.perf_counter()
    ctx.loop()
    dt = time.perf_counter() - t0
    return n / dt, mod.got


def bench_ping_pong(n: int = ROUND_TRIPS) -> tuple[float, int]:
    class Ping(md.Module):
        def on_start(self) -> None:
            self.trips = 0
            self.tell("pong", 0)

        def on_evt(self, events: list[md.Event]) -> None:
            for ev in events:
                self.trips += 1
                if self.trips >= n:
                    self.ctx.quit(0)
                    return
                self.tell(ev.data.sender, 0)

    class Pong(md.Module):
        def on_evt(self, events: list[md.Event]) -> None:
            for ev in events:
                self.tell(ev.data.sender, 0)

    ctx = md.Context("bench-pp")
    ctx.register(Pong("pong"))
    ping = ctx.register(Ping("ping"))
    t0 = time.perf_counter()
    ctx.loop()
    dt = time.perf_counter() - t0
    return n / dt, ping.trips


class Sink(md.Module):
    def on_start(self) -> None:
        self.got = 0

    def on_evt(self, events: list[md.Event]) -> None:
        self.got += len(events)


def bench_publish(n: int = PUBLISHES) -> tuple[float, float, int]:
    ctx = md.Context("bench-pub", persist=True)
    sinks = []
    for i in range(1000):
        mod = ctx.register(Sink(f"m{i}"))
        mod.start()
        if i % 100 == 0:
            mod.subscribe("hot")
            sinks.append(mod)
        else:
            mod.subscribe(f"cold/{i}/.*")
    pub = ctx.register(Sink("publisher"))
    pub.start()
    ctx.dispatch()
    t0 = time.perf_counter()
    for _ in range(n // 100):
        for _ in range(100):
            pub.publish("hot", 1)
        ctx.dispatch()
    while any(m._pending for m in sinks):
        ctx.dispatch()
    dt = time.perf_counter() - t0
    delivered = sum(m.got for m in sinks)
    return n / dt, delivered / dt, delivered


def tell_cost_ns(modules: int, n: int = 200_000) -> float:
    ctx = md.Context("bench-scale", persist=True)
    for i in range(modules - 1):
        ctx.register(Sink(f"pad{i}"))
    a = ctx.register(Sink("a"))
    a.start()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        a.tell(a, 1)
    dt = time.perf_counter_ns() - t0
    a._pending.clear()
    return dt / n


def publish_cost_ns(regex_subs: int, n: int = 100_000) -> float:
    ctx = md.Context("bench-scan", persist=True)
    holder = ctx.register(Sink("holder"))
    holder.start()
    target = ctx.register(Sink("target"))
    target.start()
    target.subscribe("exact")
    for i in range(regex_subs):
        holder.subscribe(f"other/{i}/.+")
    topics = [f"exact/{i}" for i in range(n)]  # every publish a new topic
    for i in range(0, n, 2):
        topics[i] = "exact"
    t0 = time.perf_counter_ns()
    for topic in topics:
        holder.publish(topic, 1)
    dt = time.perf_counter_ns() - t0
    target._pending.clear()
    return dt / n


def asyncio_queue(n: int = SELF_TELLS) -> float:
    async def main() -> float:
        q: asyncio.Queue[int] = asyncio.Queue()
        got = 0

        async def consumer() -> None:
            nonlocal got
            while got < n:
                await q.get()
                got += 1

        t0 = time.perf_counter()
        task = asyncio.create_task(consumer())
        for i in range(n):
            q.put_nowait(i)
            if i % WINDOW == 0:
                await asyncio.sleep(0)
        await task
        return n / (time.perf_counter() - t0)

    return asyncio.run(main())


def pykka_figures() -> dict[str, float] | None:
    """The same two workloads with Pykka threading actors."""
    try:
        import pykka
    except ImportError:
        return None

    n_tells = 200_000
    n_trips = 20_000

    class SelfTeller(pykka.ThreadingActor):
        def __init__(self, done: Any) -> None:
            super().__init__()
            self.done = done
            self.got = 0
            self.sent = 0

        def on_start(self) -> None:
            self.sent = min(WINDOW, n_tells)
            for _ in range(self.sent):
                self.actor_ref.tell(1)

        def on_receive(self, message: Any) -> None:
            self.got += 1
            if self.sent < n_tells:
                self.sent += 1
                self.actor_ref.tell(1)
            if self.got == n_tells:
                self.done.set(True)

    class Player(pykka.ThreadingActor):
        def __init__(self, done: Any) -> None:
            super().__init__()
            self.done = done
            self.peer: Any = None
            self.trips = 0

        def on_receive(self, message: Any) -> None:
            if isinstance(message, tuple):
                self.peer = message[1]
                if message[0] == "serve":
                    self.peer.tell(0)
                return
            if self.done is None:
                self.peer.tell(0)
                return
            self.trips += 1
            if self.trips == n_trips:
                self.done.set(True)
            else:
                self.peer.tell(0)

    done = pykka.ThreadingFuture()
    t0 = time.perf_counter()
    SelfTeller.start(done)
    done.get(timeout=300)
    tells = n_tells / (time.perf_counter() - t0)

    done = pykka.ThreadingFuture()
    ping = Player.start(done)
    pong = Player.start(None)
    pong.tell(("peer", ping))
    t0 = time.perf_counter()
    ping.tell(("serve", pong))
    done.get(timeout=300)
    trips = n_trips / (time.perf_counter() - t0)
    pykka.ActorRegistry.stop_all()
    return {"tells_per_s": tells, "round_trips_per_s": trips}


def main() -> int:
    self_rate, self_got = bench_self_tell()
    pp_rate, pp_trips = bench_ping_pong()
    pub_rate, deliv_rate, delivered = bench_publish()
    tell_1 = tell_cost_ns(1)
    tell_10k = tell_cost_ns(10_000)
    pub_10 = publish_cost_ns(10)
    pub_10k = publish_cost_ns(10_000)
    aq = asyncio_queue()
    pk = pykka_figures()

    rows = [
        ("self-tell (msg/s)", self_rate, aq, pk and pk["tells_per_s"]),
        ("ping-pong (round trips/s)", pp_rate, None, pk and pk["round_trips_per_s"]),
        ("publish, 10 of 1000 subs (pub/s)", pub_rate, None, None),
        ("  deliveries (msg/s)", deliv_rate, None, None),
    ]
    print(f"{'workload':36} {'moduled':>12} {'asyncio.Queue':>14} {'pykka':>12}")
    for label, ours, q, p in rows:
        qs = f"{q:14,.0f}" if q else f"{'-':>14}"
        ps = f"{p:12,.0f}" if p else f"{'-':>12}"
        print(f"{label:36} {ours:12,.0f} {qs} {ps}")
    print(f"tell cost: {tell_1:.0f} ns with 1 module, {tell_10k:.0f} ns with 10,000")
    print(
        f"exact publish cost (half on new topics): {pub_10:.0f} ns beside 10 "
        "regex subscriptions, "
        f"{pub_10k:.0f} ns beside 10,000"
    )
    if pk is None:
        print("pykka: not installed (make bench installs the bench extra)")
    else:
        print(
            f"vs pykka: self-tell x{self_rate / pk['tells_per_s']:.1f}, "
            f"ping-pong x{pp_rate / pk['round_trips_per_s']:.1f}"
        )
    dropped = (SELF_TELLS - self_got) + (ROUND_TRIPS - pp_trips)
    dropped += PUBLISHES * 10 - delivered
    print(f"messages dropped: {dropped}")
    checks = [
        ("self-tell >= 1,000,000/s", self_rate >= 1_000_000),
        ("ping-pong >= 200,000 round trips/s", pp_rate >= 200_000),
        ("tell cost flat (10,000 vs 1 module <= 1.5x)", tell_10k <= 1.5 * tell_1),
        ("publish cost flat (10,000 vs 10 regex <= 1.5x)", pub_10k <= 1.5 * pub_10),
        ("nothing dropped", dropped == 0),
    ]
    if pk is not None:
        checks += [
            ("self-tell >= 10x pykka", self_rate >= 10 * pk["tells_per_s"]),
            ("ping-pong >= 5x pykka", pp_rate >= 5 * pk["round_trips_per_s"]),
        ]
    for label, ok in checks:
        print(f"target {label}: {'met' if ok else 'NOT met'}")
    print(
        json.dumps(
            {
                "bench": "pubsub",
                "self_tell_per_s": round(self_rate),
                "ping_pong_round_trips_per_s": round(pp_rate),
                "publish_per_s": round(pub_rate),
                "publish_deliveries_per_s": round(deliv_rate),
                "tell_ns_1_module": round(tell_1),
                "tell_ns_10000_modules": round(tell_10k),
                "exact_publish_ns_10_regex": round(pub_10),
                "exact_publish_ns_10000_regex": round(pub_10k),
                "asyncio_queue_per_s": round(aq),
                "pykka": pk and {k: round(v) for k, v in pk.items()},
                "dropped": dropped,
            }
        )
    )
    return 0 if all(ok for _label, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
