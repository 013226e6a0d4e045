"""python -m bench [--quick] [--profile] [--workdir DIR]: every reference benchmark, one table.

Runs, on one generated reference workload (bench/workload.py):
  1. Pipeline.evaluate in process, one thread: (a) rules + facts, (b) + SQLite counters,
     (c) + decision log — bench/pipeline_bench.py
  2. daemon start time and memory on the workload — bench/pipeline_bench.py
  3. gRPC on loopback: batch, stream and paced unary against the daemon (SQLite counters,
     counters off, counters and decision log off, Redis counters) beside a bare grpcio echo
     server — bench/grpc_bench.py
and prints one table: metric, value, target, baseline, ratio (value / baseline). Throughput
and latency figures are medians of 3 runs (latency: 1 with --quick). The machine is shared:
the load average is sampled every 5 s during the run and printed with the table. --quick
shrinks the workload and every run to a smoke test (under a minute); its figures are not the
reference ones.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from . import grpc_bench, pipeline_bench
from .workload import FULL, QUICK, Workload


class LoadSampler:
    """The 1-minute load average every `every` seconds, in a daemon thread."""

    def __init__(self, every: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, name="loadavg", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self._every):
                return

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        s = self.samples
        return (f"1-min load average during the run: min {min(s):.2f}, median {statistics.median(s):.2f}, "
                f"max {max(s):.2f} ({len(s)} samples; {os.cpu_count()} CPUs)")


def machine() -> list[str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    try:
        from importlib.metadata import version
        durable = version("durable_rules")
    except Exception:  # noqa: BLE001 - informational only
        durable = "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                                cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    except OSError:
        commit = "?"
    return [
        f"date {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, commit {commit} (+ working tree)",
        (f"{os.cpu_count()} CPUs ({model}), {mem_kb / 1024 / 1024:.1f} GiB RAM, "
         f"Python {platform.python_version()}, durable_rules {durable}, grpcio {grpc_bench.grpc.__version__}"),
    ]


def fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    size = abs(x)
    return f"{x:,.0f}" if size >= 100 else f"{x:.1f}" if size >= 10 else f"{x:.2f}"


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def table(rows: list[tuple]) -> str:
    head = ("metric", "value", "target", "baseline", "ratio")
    cells = [head] + [(*(fmt(c) for c in r[:4]), "—" if r[4] is None else f"{r[4]:.2f}") for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(5)]
    lines = []
    for k, r in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                                       for i, c in enumerate(r)) + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                                        for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def rows_for(p: dict, start: dict, g: dict) -> list[tuple]:
    med, rmed = pipeline_bench.median_rate, pipeline_bench.median_recipient_rate
    a, b, c = med(p["a"]), med(p["b"]), med(p["c"])
    cpu = {k: statistics.median(r.cpu / r.messages for r in p[k]) * 1e6 for k in "abc"}
    added = 1e6 / b - 1e6 / a
    rows = [
        ("in process (a) rules+facts, decisions/s", a, f"≥ 20,000: {verdict(a, 20_000, True)}", None, None),
        ("in process (a) recipient decisions/s", rmed(p["a"]), "", None, None),
        ("in process (a) µs/decision (CPU µs)", f"{1e6 / a:.1f} ({cpu['a']:.1f})", "", None, None),
        ("in process (a) first pass, cold caches, decisions/s", p["cold"].rate, "", a, p["cold"].rate / a),
        ("in process (b) + SQLite counters, decisions/s", b, "", a, b / a),
        ("counter step added µs/decision, SQLite, wall", added, f"≤ 30: {verdict(added, 30, False)}", None, None),
        ("counter step added CPU µs/decision, SQLite", cpu["b"] - cpu["a"], "", None, None),
        ("in process (c) + decision log, decisions/s", c, "", a, c / a),
        ("daemon start to SERVING, s", start["start_s"], f"≤ 10: {verdict(start['start_s'], 10, False)}", None, None),
        ("daemon VmRSS after start, MB", start["rss_mb"], f"≤ 500: {verdict(start['rss_mb'], 500, False)}", None, None),
    ]
    mem = g["memory"].get("sqlite", {})
    if mem:
        rows.append(("daemon VmRSS / VmHWM after the gRPC runs, MB", f"{mem['VmRSS']:.0f} / {mem['VmHWM']:.0f}",
                     f"≤ 500: {verdict(mem['VmHWM'], 500, False)}", None, None))
    gm = grpc_bench.median
    for form, name in (("batch", "EvaluateBatch (100/batch, 4 in flight)"), ("stream", "EvaluateStream (2 streams)")):
        echo, sq, off = gm(g[form]["echo"]), gm(g[form]["sqlite"]), gm(g[form]["off"])
        rows.append((f"gRPC {name}, decisions/s, daemon as shipped (SQLite)", sq,
                     f"≥ 5,000: {verdict(sq, 5_000, True)}", echo, sq / echo))
        rows.append((f"gRPC {name}, decisions/s, counters off", off, "", echo, off / echo))
        bare = gm(g[form]["bare"])
        rows.append((f"gRPC {name}, decisions/s, counters and log off", bare, "", echo, bare / echo))
        rows.append((f"gRPC {name}, SQLite counters vs counters off", sq, "", off, sq / off))
        if "redis" in g[form]:
            rd = gm(g[form]["redis"])
            rows.append((f"gRPC {name}, Redis counters vs counters off", rd,
                         f"≥ 0.7× off: {verdict(rd / off, 0.7, True)}", off, rd / off))
    pct = grpc_bench.median_pct
    echo50, echo99 = pct(g["unary"]["echo"], 50), pct(g["unary"]["echo"], 99)
    for kind, label in (("sqlite", "daemon as shipped (SQLite)"), ("off", "counters off"),
                        ("bare", "counters and log off")):
        p50, p99 = pct(g["unary"][kind], 50), pct(g["unary"][kind], 99)
        rows.append((f"gRPC unary @{grpc_bench.UNARY_RATE}/s p50 ms, {label}", f"{p50:.2f}", "",
                     f"{echo50:.2f}", p50 / echo50))
        rows.append((f"gRPC unary @{grpc_bench.UNARY_RATE}/s p99 ms, {label}", f"{p99:.2f}",
                     f"≤ 5: {verdict(p99, 5, False)}" if kind == "sqlite" else "",
                     f"{echo99:.2f}", p99 / echo99))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not reference figures")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of in-process config (b)")
    ap.add_argument("--workdir", type=Path, help="keep every file here (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    quick = args.quick
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="smspolicy-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load = LoadSampler()
    redis_proc = None
    began = time.perf_counter()
    say = (lambda *a: print(*a, flush=True))
    try:
        for line in machine():
            say(line)
        t = time.perf_counter()
        w = Workload(QUICK if quick else FULL)
        rules = w.write(workdir / "rules")
        n_in, n_grpc = (1000, 1000) if quick else (20_000, 10_000)
        subs = list(w.messages(max(n_in, n_grpc)))
        summary = ", ".join(f"{k} {v}" for k, v in w.summary().items())
        say(f"workload{' (QUICK sizes)' if quick else ''}: {summary}; written in {time.perf_counter() - t:.1f} s")
        recipients = sum(len(s.destinations) for s in subs[:n_in])
        say(f"in process: {n_in} messages ({recipients} recipients) per run")
        p = pipeline_bench.measure(rules, subs[:n_in], workdir / "inproc", log=say)
        say("daemon start:")
        start = pipeline_bench.daemon_start(rules, workdir / "start", reps=1 if quick else 3, log=say)
        redis_proc, url = grpc_bench.start_redis(workdir)
        if not url:
            say("no redis-server on PATH: the Redis rows are left out")
        say(f"gRPC: {n_grpc} messages per batch/stream run")
        g = grpc_bench.measure(rules, subs[:n_grpc], workdir / "grpc", 2 if quick else 10,
                               unary_reps=1 if quick else 3, redis_url=url, log=say)
        say(f"\nmean EvaluateResponse size {g['response_bytes']} bytes; a decision = one message "
            f"(mean {recipients / n_in:.2f} recipients)")
        say(table(rows_for(p, start, g)))
        say(load.stop())
        if args.profile:
            say(pipeline_bench.profile(rules, subs[: n_in // 4], workdir / "profile"))
        say(f"total {time.perf_counter() - began:.0f} s")
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
