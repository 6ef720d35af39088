"""Path source throughput: moduled vs a bare inotify_simple loop vs watchdog.

A separate process creates FILES files in a watched directory on tmpfs while
this process reads the IN_CREATE events, so reader and writer compete for
the CPU as they would in production.  For each reader it prints events/s
(first to last event), CPU time per event (``time.process_time``, every
thread of this process) and events lost, then one JSON line.

Usage: python bench/path.py [--files N] [--runs R] [--dir TMPFS_DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import inotify_simple

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import moduled as md

WRITER = """
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
flags = os.O_CREAT | os.O_WRONLY
for i in range(n):
    os.close(os.open(f"{d}/f{i}", flags, 0o644))
"""


class Tally:
    """Counts events and remembers when the first and last arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.overflows = 0
        self.first = 0.0
        self.last = 0.0

    def add(self, n: int) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += n
        self.last = now

    def result(self, files: int, cpu: float) -> dict[str, Any]:
        span = self.last - self.first
        return {
            "events": self.count,
            "events_per_s": (self.count - 1) / span if span > 0 else 0.0,
            "cpu_us_per_event": cpu / self.count * 1e6 if self.count else 0.0,
            "lost": max(files - self.count, 0),
            "overflows": self.overflows,
        }


def _writer(directory: str, files: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, directory, str(files)])


def run_moduled(directory: str, files: int) -> dict[str, Any]:
    tally = Tally()

    class Reader(md.Module):
        def on_start(self) -> None:
            self.register(md.Path(directory, md.IN_CREATE))
            self.register(md.Timer(200_000_000))  # notices a writer that is done
            self._seen = 0
            self._writer = _writer(directory, files)

        def on_evt(self, events: list[md.Event]) -> None:
            n = 0
            for ev in events:
                if ev.type is md.SrcType.PATH:
                    if ev.data.mask & md.IN_Q_OVERFLOW:
                        tally.overflows += 1
                    else:
                        n += 1
            if n:
                tally.add(n)
            if tally.count >= files:
                self.ctx.quit(0)
            elif events[-1].type is md.SrcType.TIMER:
                if self._writer.poll() is not None and self._seen == tally.count:
                    self.ctx.quit(0)
                self._seen = tally.count

        def on_stop(self) -> None:
            self._writer.wait()

    ctx = md.Context("bench")
    ctx.register(Reader("reader"))
    cpu = time.process_time()
    ctx.loop()
    return tally.result(files, time.process_time() - cpu)


def run_bare(directory: str, files: int) -> dict[str, Any]:
    tally = Tally()
    ino = inotify_simple.INotify()
    ino.add_watch(directory, inotify_simple.flags.CREATE)
    cpu = time.process_time()
    writer = _writer(directory, files)
    while tally.count < files:
        events = ino.read(timeout=200)
        if not events:
            if writer.poll() is not None:
                break
            continue
        n = 0
        for ev in events:
            if ev.mask & inotify_simple.flags.Q_OVERFLOW:
                tally.overflows += 1
            else:
                n += 1
        if n:
            tally.add(n)
    cpu = time.process_time() - cpu
    writer.wait()
    ino.close()
    return tally.result(files, cpu)


def run_watchdog(directory: str, files: int) -> dict[str, Any] | None:
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        return None
    tally = Tally()
    done = threading.Event()

    class Overflows(logging.Handler):
        # watchdog reports a queue overflow only in its log.
        def emit(self, record: logging.LogRecord) -> None:
            if "overflow" in record.getMessage().lower():
                tally.overflows += 1

    wd_log = logging.getLogger("watchdog")
    counter = Overflows()
    wd_log.addHandler(counter)
    wd_log.propagate = False

    class Handler(FileSystemEventHandler):
        def on_created(self, event: Any) -> None:
            tally.add(1)
            if tally.count >= files:
                done.set()

    observer = Observer()
    observer.schedule(Handler(), directory, recursive=False)
    observer.start()
    cpu = time.process_time()
    writer = _writer(directory, files)
    seen = -1
    while not done.wait(0.2):
        if writer.poll() is not None and seen == tally.count:
            break
        seen = tally.count
    cpu = time.process_time() - cpu
    observer.stop()
    observer.join()
    writer.wait()
    wd_log.removeHandler(counter)
    return tally.result(files, cpu)


def measure(
    fn: Callable[[str, int], dict[str, Any] | None], base: str, files: int, runs: int
) -> dict[str, Any] | None:
    """Median of ``runs`` runs, each in a fresh directory."""
    results = []
    for _ in range(runs):
        directory = tempfile.mkdtemp(prefix="moduled-bench-", dir=base)
        try:
            res = fn(directory, files)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        if res is None:
            return None
        results.append(res)
    results.sort(key=lambda r: r["events_per_s"])
    median = dict(results[len(results) // 2])
    median["lost"] = max(r["lost"] for r in results)
    median["overflows"] = sum(r["overflows"] for r in results)
    median["cpu_us_per_event"] = statistics.median(
        r["cpu_us_per_event"] for r in results
    )
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm")
    args = parser.parse_args()

    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        queued = f.read().strip()
    print(
        f"path bench: {args.files} files created by a separate process in "
        f"{args.dir}, IN_CREATE, median of {args.runs} runs, "
        f"max_queued_events={queued}"
    )
    results: dict[str, Any] = {}
    for name, fn in (
        ("moduled", run_moduled),
        ("inotify_simple", run_bare),
        ("watchdog", run_watchdog),
    ):
        res = measure(fn, args.dir, args.files, args.runs)
        results[name] = res
        if res is None:
            print(f"{name}: not installed")
            continue
        print(
            f"{name:>15}: {res['events_per_s']:>10,.0f} events/s  "
            f"{res['cpu_us_per_event']:>6.2f} us CPU/event  "
            f"lost {res['lost']:>5}  overflows {res['overflows']}"
        )
    ratio = (
        results["moduled"]["events_per_s"] / results["inotify_simple"]["events_per_s"]
    )
    ok = ratio >= 0.8 and results["moduled"]["lost"] == 0
    print(
        f"moduled / bare inotify_simple rate: {ratio:.0%} "
        f"(target >= 80%, none lost): {'met' if ok else 'NOT met'}"
    )
    print(
        json.dumps(
            {
                "bench": "path",
                "files": args.files,
                "runs": args.runs,
                "max_queued_events": int(queued),
                "results": results,
                "moduled_vs_bare": round(ratio, 3),
                "target_met": ok,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
