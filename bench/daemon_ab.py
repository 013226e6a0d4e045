"""Interleaved A/B of daemons built from two (or more) source trees, on the reference workload.

    python -m bench.daemon_ab --tree base=/tmp/base --tree new=. [--kind sqlite|off|bare|redis]
                              [--redis-url redis://127.0.0.1:6379/]
                              [--form batch|unary|paced] [--runs 6] [--messages 5000]
                              [--rate 300] [--seconds 20]

Make the other tree with `git worktree add /tmp/base <commit>` and copy the generated stubs into
it (`cp -r policy/api /tmp/base/policy/`). Each tree's daemon is started from its own folder
(`python -m policy serve` with that folder as the working directory), warmed with one pass over
the messages, then the runs alternate between the daemons (the order flips every run, so a load
spike on the shared machine hits them alike). Medians are printed per tree.

  batch   EvaluateBatch (100 per call, 4 in flight): decisions/s and the daemon's CPU µs per
          message, read from /proc/PID/stat around the run; the client's CPU beside it
  unary   unary Evaluate, 16 in flight, closed loop: the same figures per call (2,000 calls)
  paced   unary Evaluate sent open loop at --rate calls/s for --seconds: p50 / p99 / max ms
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import grpc_bench as gb
from .frontend_e2e import cpu_seconds as process_cpu
from .workload import FULL, QUICK, Workload


def one_run(server: gb.DaemonProcess, form: str, reqs: list, rate: float) -> dict:
    if form == "paced":
        lat = gb.paced_unary(server.target, reqs, rate)
        return {"p50": lat.pct(50), "p99": lat.pct(99), "max": lat.pct(100), "errors": lat.errors}
    fn = gb.batch_rate if form == "batch" else gb.unary_rate
    cpu0, client0, wall0 = process_cpu(server.popen.pid), time.process_time(), time.perf_counter()
    r = fn(server.target, reqs)
    wall = time.perf_counter() - wall0
    return {"rate": r.rate, "cpu_us": (process_cpu(server.popen.pid) - cpu0) / len(reqs) * 1e6,
            "client_us": (time.process_time() - client0) / len(reqs) * 1e6,
            "daemon_load": (process_cpu(server.popen.pid) - cpu0) / wall, "errors": r.errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--kind", default="sqlite", choices=("sqlite", "off", "bare", "redis"))
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/",
                    help="--kind redis: a server to use; each tree gets its own database number")
    ap.add_argument("--form", default="batch", choices=("batch", "unary", "paced"))
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="small workload: a smoke run, not figures")
    args = ap.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.tree)
    workdir = Path(tempfile.mkdtemp(prefix="smspolicy-daemon-ab-"))
    servers: dict[str, gb.DaemonProcess] = {}
    try:
        w = Workload(QUICK if args.quick else FULL)
        rules = w.write(workdir / "rules")
        n = int(args.rate * args.seconds) if args.form == "paced" else args.messages
        subs = list(w.messages(n))
        part = subs[:2000] if args.form == "unary" else subs
        for db, (name, tree) in enumerate(trees.items(), start=1):
            gb.REPO = Path(tree).resolve()   # the daemon's working directory: its `policy`
            url = urlunsplit(urlsplit(args.redis_url)._replace(path=f"/{db}")) if args.kind == "redis" else ""
            servers[name] = gb.DaemonProcess(rules, workdir / f"daemon-{name}", args.kind, redis_url=url)
            gb.batch_rate(servers[name].target, gb.requests_for(subs, f"warm-{name}"))
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for run in range(args.runs):
            order = list(trees) if run % 2 == 0 else list(trees)[::-1]
            for name in order:
                res = one_run(servers[name], args.form, gb.requests_for(part, f"{name}-{run}"), args.rate)
                results[name].append(res)
                print(f"run {run + 1} {name:<8} " + "  ".join(
                    f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()), flush=True)
        for name, runs in results.items():
            keys = [k for k in runs[0] if k != "errors"]
            print(f"{name:<8} median " + "  ".join(
                f"{k} {statistics.median(r[k] for r in runs):.1f}" for k in keys)
                + f"  errors {sum(r['errors'] for r in runs)}")
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
