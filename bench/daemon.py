"""Daemon figures: start-up to READY, memory, idle CPU, control latency.

Run as root from the repository (``make bench`` or ``.venv/bin/python
bench/daemon.py``).  Every figure comes with a same-run baseline:

* start-up: time from exec to READY=1 on a real NOTIFY_SOCKET, with the
  stock plugins (READY waits until their eBPF probes are compiled and
  attached), with the stock plugins without eBPF, and with none; baseline:
  ``python -c "import moduled"``; and how many probes are attached (of
  how many) when READY arrives;
* RSS after start-up settles: stock plugins with and without eBPF
  (crash_reporter's OOM tracepoint off, write_exec and exec_logger with
  ``ebpf = false``),
  and with no plugins;
* CPU of an idle daemon over 10 s (utime + stime from /proc), with no
  plugins and with the stock plugins (those react to whatever the machine
  does, so they are not truly idle); target < 1 %;
* control latency: ``status`` round trips over the socket, and a whole
  ``modulectl status`` process, while a plugin pushes about 100,000
  messages a second through the daemon; baseline: the same with no load;
* the tap's cost: the daemon's CPU under that load while nobody tails and
  while a client tails ``kernel/.*`` (every delivery is then observed).

Prints one line per figure, then one JSON line with all of them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
STOCK = ROOT / "daemon" / "plugins"

LOAD = """
import moduled as md

RATE = {rate}
TICK_NS = 2_000_000  # 500 ticks/s, RATE/500 messages each


class Source(md.Module):
    name = "load_source"

    def on_start(self):
        self.register(md.Timer(TICK_NS))
        self.per_tick = RATE // 500

    def on_evt(self, events):
        n = sum(ev.data.expirations for ev in events) * self.per_tick
        for i in range(n):
            self.tell("load_sink", i)


class Sink(md.Module):
    name = "load_sink"

    def on_evt(self, events):
        pass
"""


class Daemon:
    def __init__(self, plugin_dirs: list[Path], config: str = "") -> None:
        self.base = Path(tempfile.mkdtemp(prefix="moduled-bench-"))
        self.sock = str(self.base / "control.sock")
        (self.base / "moduled.toml").write_text(config)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.base / "notify.sock"))
        self.notify.settimeout(60)
        args = [PY, "-m", "moduled.daemon.main", "--socket", self.sock]
        args += ["--config", str(self.base / "moduled.toml"), "--log-level", "error"]
        for d in plugin_dirs:
            args += ["--plugins", str(d)]
        env = dict(os.environ, NOTIFY_SOCKET=str(self.base / "notify.sock"))
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(args, env=env, stderr=subprocess.DEVNULL)
        while b"READY=1" not in self.notify.recv(4096).split(b"\n"):
            pass
        self.ready_s = time.monotonic() - self.t0

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def request(self, cmd: str, conn: socket.socket | None = None) -> dict:
        s = conn or socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if conn is None:
            s.connect(self.sock)
        s.sendall(json.dumps({"v": 1, "id": 1, "cmd": cmd}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            buf += s.recv(1 << 20)
        if conn is None:
            s.close()
        return json.loads(buf)

    def module(self, name: str) -> dict:
        for m in self.request("list")["result"]:
            if m["name"] == name:
                return m
        raise KeyError(name)

    def stop(self) -> float:
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.notify.close()
        shutil.rmtree(self.base, ignore_errors=True)
        return time.monotonic() - t


def _median_ready(dirs: list[Path], config: str = "", runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        d = Daemon(dirs, config)
        times.append(d.ready_s)
        d.stop()
    return statistics.median(times)


def _import_baseline(runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.monotonic()
        subprocess.run([PY, "-c", "import moduled"], check=True)
        times.append(time.monotonic() - t)
    return statistics.median(times)


def _latencies(d: Daemon, count: int = 200) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        reply = d.request("status")
        samples.append(time.perf_counter() - t)
        assert reply["ok"], reply
    samples.sort()
    return samples[len(samples) // 2] * 1e3, samples[int(len(samples) * 0.99)] * 1e3


def _modulectl_ms(d: Daemon, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.monotonic()
        subprocess.run(
            [PY, "-m", "moduled.cli.modulectl", "--socket", d.sock, "status"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.monotonic() - t)
    return statistics.median(times) * 1e3


def _cpu_pct(d: Daemon, seconds: float = 3.0) -> float:
    c0, t0 = d.cpu_s(), time.monotonic()
    time.sleep(seconds)
    return (d.cpu_s() - c0) / (time.monotonic() - t0) * 100


def main() -> int:
    out: dict[str, float] = {}
    empty = Path(tempfile.mkdtemp(prefix="moduled-bench-empty-"))
    no_bpf = (
        "[plugins.crash_reporter]\nenabled = false\n"
        "[plugins.write_exec]\nebpf = false\n"
        "[plugins.exec_logger]\nebpf = false\n"
    )

    out["import_moduled_s"] = _import_baseline()
    out["ready_no_plugins_s"] = _median_ready([empty])
    out["ready_stock_no_ebpf_s"] = _median_ready([STOCK], no_bpf)
    out["ready_stock_s"] = _median_ready([STOCK])
    d = Daemon([STOCK])
    # The first request after READY: what a client sees at that moment.
    probes = [p for p in d.request("probes")["result"] if p["type"] == "probe"]
    out["probes_at_ready"] = len(probes)
    out["probes_attached_at_ready"] = sum(p.get("state") == "attached" for p in probes)
    d.stop()
    print(
        f"start to READY: stock plugins {out['ready_stock_s']:.3f} s (eBPF probes "
        f"compiled and attached: {out['probes_attached_at_ready']:.0f} of "
        f"{out['probes_at_ready']:.0f} at READY), stock without eBPF "
        f"{out['ready_stock_no_ebpf_s']:.3f} s, no plugins "
        f"{out['ready_no_plugins_s']:.3f} s (baseline: import moduled "
        f"{out['import_moduled_s']:.3f} s)"
    )

    for label, dirs, config in (
        ("rss_no_plugins_kib", [empty], ""),
        ("rss_stock_without_ebpf_kib", [STOCK], no_bpf),
        ("rss_stock_with_ebpf_kib", [STOCK], ""),
    ):
        d = Daemon(dirs, config)
        time.sleep(3)  # let start-up garbage settle
        out[label] = d.rss_kib()
        if label == "rss_stock_with_ebpf_kib":
            probes = d.request("probes")["result"]
            out["ebpf_probes_attached"] = sum(p["type"] == "probe" for p in probes)
        d.stop()
    print(
        f"RSS: no plugins {out['rss_no_plugins_kib'] / 1024:.1f} MiB, stock without "
        f"eBPF {out['rss_stock_without_ebpf_kib'] / 1024:.1f} MiB, stock with eBPF "
        f"{out['rss_stock_with_ebpf_kib'] / 1024:.1f} MiB "
        f"({out['ebpf_probes_attached']:.0f} probes attached)"
    )

    for label, dirs in (
        ("idle_cpu_no_plugins_pct", [empty]),
        ("idle_cpu_stock_pct", [STOCK]),
    ):
        d = Daemon(dirs)
        time.sleep(3)
        c0, t0 = d.cpu_s(), time.monotonic()
        time.sleep(10)
        out[label] = (d.cpu_s() - c0) / (time.monotonic() - t0) * 100
        d.stop()
    print(
        f"idle CPU over 10 s: no plugins {out['idle_cpu_no_plugins_pct']:.2f} %, "
        f"stock plugins {out['idle_cpu_stock_pct']:.2f} % (target < 1 %; "
        "resolution 1 clock tick = 0.1 %)"
    )

    load_dir = Path(tempfile.mkdtemp(prefix="moduled-bench-load-"))
    (load_dir / "load.py").write_text(LOAD.format(rate=100_000))
    d = Daemon([empty])
    out["status_p50_idle_ms"], out["status_p99_idle_ms"] = _latencies(d)
    out["modulectl_status_idle_ms"] = _modulectl_ms(d)
    d.stop()
    d = Daemon([load_dir])
    time.sleep(1)
    r0, t0 = d.module("load_sink")["recv"], time.monotonic()
    out["status_p50_load_ms"], out["status_p99_load_ms"] = _latencies(d)
    out["modulectl_status_load_ms"] = _modulectl_ms(d)
    out["load_events_per_s"] = (d.module("load_sink")["recv"] - r0) / (
        time.monotonic() - t0
    )
    out["load_cpu_untailed_pct"] = _cpu_pct(d)
    tail = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tail.connect(d.sock)
    req = {"v": 1, "id": "t", "cmd": "tail", "args": {"topic": "kernel/.*"}}
    tail.sendall(json.dumps(req).encode() + b"\n")
    tail.recv(4096)
    out["load_cpu_tailed_pct"] = _cpu_pct(d)
    tail.close()
    out["stop_under_load_s"] = d.stop()
    print(
        f"status round trip under {out['load_events_per_s']:,.0f} events/s: "
        f"p50 {out['status_p50_load_ms']:.2f} ms, p99 "
        f"{out['status_p99_load_ms']:.2f} ms (idle baseline: p50 "
        f"{out['status_p50_idle_ms']:.2f} ms, p99 {out['status_p99_idle_ms']:.2f} ms)"
    )
    print(
        f"modulectl status process: {out['modulectl_status_load_ms']:.0f} ms under "
        f"load, {out['modulectl_status_idle_ms']:.0f} ms idle"
    )
    print(
        f"daemon CPU under that load: {out['load_cpu_untailed_pct']:.1f} % with "
        f"nobody tailing, {out['load_cpu_tailed_pct']:.1f} % while tailing kernel/.*"
    )
    print(f"SIGTERM to exit under load: {out['stop_under_load_s']:.3f} s")

    shutil.rmtree(empty, ignore_errors=True)
    shutil.rmtree(load_dir, ignore_errors=True)
    print(json.dumps({"bench": "daemon", **{k: round(v, 4) for k, v in out.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
