"""Scale-out: several daemons sharing one Redis, against one daemon, on the reference workload.

    python -m bench.scale_out [--daemons 2] [--runs 4] [--messages 5000] [--redis-url URL]

A daemon is one Python process whose work holds the GIL, so it uses one core; Redis counters
(issue 3) are what lets several daemons serve one platform and stay exact. This measures what
the extra daemons bring on this machine: `--daemons` N `smspolicy serve --counters redis`
daemons, each with its own data folder (decision log), on N loopback ports sharing one Redis
database, against one such daemon on another database, runs interleaved (the order flips every
run). The client is the same in both: EvaluateBatch, 100 messages per call, 4 calls in flight
in all (4 / N per daemon). In production the daemons would share one port (`reuse_port: true`):
the kernel spreads connections, so a client needs a channel per daemon to reach them all, which
is what the N ports make explicit here. Without --redis-url a private redis-server is started.
Prints each run, the medians, and the ratio N daemons / one daemon.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import grpc_bench as gb
from .workload import FULL, QUICK, Workload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--daemons", type=int, default=2)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--redis-url", default="", help="a server to use (databases 1 and 2); default: a private one")
    ap.add_argument("--quick", action="store_true", help="small workload: a smoke run, not figures")
    args = ap.parse_args(argv)
    if args.daemons < 2:
        ap.error("--daemons must be at least 2")
    workdir = Path(tempfile.mkdtemp(prefix="smspolicy-scale-out-"))
    redis_proc, url = None, args.redis_url
    daemons: list[gb.DaemonProcess] = []
    try:
        if not url:
            redis_proc, url = gb.start_redis(workdir)
            if not url:
                raise SystemExit("no redis-server on PATH and no --redis-url")

        def db(n: int) -> str:
            return urlunsplit(urlsplit(url)._replace(path=f"/{n}"))

        w = Workload(QUICK if args.quick else FULL)
        rules = w.write(workdir / "rules")
        subs = list(w.messages(args.messages))
        daemons.append(gb.DaemonProcess(rules, workdir / "one", "redis", redis_url=db(1)))
        for k in range(args.daemons):
            daemons.append(gb.DaemonProcess(rules, workdir / f"many-{k}", "redis", redis_url=db(2)))
        one, many = daemons[0].target, [d.target for d in daemons[1:]]
        for d in daemons:   # every segment of the stream seen once by each daemon
            gb.batch_rate(d.target, gb.requests_for(subs, f"warm-{d.target}"))
        label = f"{args.daemons} daemons"
        rates: dict[str, list[float]] = {"1 daemon": [], label: []}
        for run in range(args.runs):
            for name in (list(rates) if run % 2 == 0 else list(rates)[::-1]):
                reqs = gb.requests_for(subs, f"{name}-{run}")
                r = gb.batch_rate(one, reqs) if name == "1 daemon" else gb.spread_batch_rate(many, reqs)
                rates[name].append(r.rate)
                print(f"run {run + 1} {name:<10} {r.rate:7.0f} decisions/s  errors {r.errors}", flush=True)
        med = {name: statistics.median(v) for name, v in rates.items()}
        for name, v in rates.items():
            print(f"{name:<10} median {med[name]:7.0f} decisions/s  runs {[round(x) for x in v]}")
        print(f"{label} / 1 daemon: {med[label] / med['1 daemon']:.2f}")
    finally:
        for d in daemons:
            d.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
