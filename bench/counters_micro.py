"""Micro-benchmark of the counter step (pipeline step 4), SQLite in process and Redis.

    PYTHONPATH=. python bench/counters_micro.py [--n 20000] [--redis-url redis://...]

A charge is one recipient under three limits (per number per minute, per account per day,
number+content per day) over 10 000 rotating numbers, so per-number buckets are both new and
existing. Without --redis-url a private redis-server is started on a free loopback port when one
is on PATH.

SQLite rows: "SQLite" is the shared mode (a transaction per charge), "SQLite exclusive" the
default mode (memory + group-committed journal; "each waits" = every charge waits for its commit).

Part 1, per charge: wall and CPU microseconds (median of 5 runs; CPU time is the steadier figure
on a shared machine). "8 threads" rows are wall time / charges with 8 threads charging at once.
Part 2, under load: 8 threads each do --work microseconds of pure-Python work per decision (a
stand-in for the rest of the daemon) and then charge. It reports decisions/s without counters,
with each backend, the microseconds counters add per decision and the throughput ratio.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import redis

from policy.counters import ChargeResult, ExclusiveSqliteCounterStore, LimitPlan, RecipientCharge, RedisCounterStore, SqliteCounterStore
from policy.rules.model import Limit

NOW = datetime(2024, 3, 15, 10, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PLAN = LimitPlan([
    Limit(id="num-minute", scope="account_number", max=1_000_000, window="minute"),
    Limit(id="daily", scope="account", max=1_000_000_000, window="day"),
    Limit(id="same-content", scope="account_number_content", max=1_000_000, window="day"),
])
NUMBERS = [f"138{i:08d}" for i in range(10_000)]
REPS = 5


class NoOpStore:
    """Baseline: what the loop costs around a store that does nothing."""

    def charge(self, request_id, recipients, debit_account, price_per_segment, now, wait=True):
        return ChargeResult(ok_indexes=[r.index for r in recipients], rejected={}, values=[])


def recipients(i: int) -> list[RecipientCharge]:
    return [RecipientCharge(0, PLAN.increments("900001", "ch1", NUMBERS[i % len(NUMBERS)], "c0ffee", 1, NOW), 1)]


def group(i: int, size: int = 100) -> list[RecipientCharge]:
    return [RecipientCharge(r, PLAN.increments("900001", "ch1", NUMBERS[(i * size + r) % len(NUMBERS)],
                                               "c0ffee", 1, NOW), 1) for r in range(size)]


def spin(iterations: int) -> int:
    x = 0
    for i in range(iterations):
        x += i * i
    return x


def timed(store, work, tag, debit=None, threads=1, spin_iterations=0, batch=0) -> tuple[float, float]:
    """(wall us, CPU us) per charge of `work` spread over `threads` threads. batch > 0: charges
    do not wait to be durable, every `batch`-th waits for all before it (EvaluateBatch)."""
    now = NOW.timestamp()
    per = len(work) // threads

    def run(t):
        for i in range(t * per, (t + 1) * per):
            if spin_iterations:
                spin(spin_iterations)
            if store is None:
                continue
            if batch:
                res = store.charge(f"{tag}-{i}", work[i], debit, 5, now, wait=False)
                if i % batch == batch - 1 or i == (t + 1) * per - 1:
                    store.wait_durable(res.durable)
            else:
                store.charge(f"{tag}-{i}", work[i], debit, 5, now)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    wall, cpu = time.perf_counter(), time.process_time()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    n = per * threads
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def median_of(fn, reps=REPS) -> tuple[float, float]:
    runs = [fn(r) for r in range(reps)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def start_redis(workdir: str):
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(500):
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.01)
    proc.kill()
    raise SystemExit("redis-server did not answer PING")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="charges per run (Redis: n/4)")
    ap.add_argument("--redis-url", default=None)
    ap.add_argument("--work", type=float, default=300.0,
                    help="microseconds of other Python work per decision in part 2")
    args = ap.parse_args()
    n = args.n
    per_rep = n // REPS
    work = [recipients(i) for i in range(n)]

    def build(_):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(per_rep):
            recipients(i)
        return (time.perf_counter() - wall) / per_rep * 1e6, (time.process_time() - cpu) / per_rep * 1e6

    part1 = [("build increments (LimitPlan.increments, 3 limits)", median_of(build)),
             ("no-op store (baseline loop)",
              median_of(lambda r: timed(NoOpStore(), work[r * per_rep:(r + 1) * per_rep], "noop")))]
    part2: list[tuple[str, float]] = []
    t = time.perf_counter()
    spin(100_000)
    spin_iterations = int(args.work / ((time.perf_counter() - t) * 1e6 / 100_000))
    slab = work[: max(n // 4, 800)]

    def load(store, tag):
        wall, _ = median_of(lambda r: timed(store, slab, f"{tag}{r}", threads=8,
                                            spin_iterations=spin_iterations), reps=3)
        return 1e6 / wall

    part2.append(("no counters", load(None, "none")))

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteCounterStore(os.path.join(tmp, "c.db"))
        store.set_opening_balance("prepaid", 10**12)
        timed(store, work[:2000], "warm")
        chunks = lambda r: work[r * per_rep:(r + 1) * per_rep]  # noqa: E731
        part1.append(("SQLite, 1 thread, postpaid", median_of(lambda r: timed(store, chunks(r), f"s1{r}"))))
        part1.append(("SQLite, 1 thread, prepaid debit",
                      median_of(lambda r: timed(store, chunks(r), f"s2{r}", debit="prepaid"))))
        part1.append(("SQLite, 8 threads, postpaid",
                      median_of(lambda r: timed(store, chunks(r), f"s8{r}", threads=8))))
        groups = [group(i) for i in range(REPS * 20)]
        wall, cpu = median_of(lambda r: timed(store, groups[r * 20:(r + 1) * 20], f"sg{r}"))
        part1.append(("SQLite, group send of 100, per recipient", (wall / 100, cpu / 100)))
        part2.append(("SQLite", load(store, "sl")))
        store.close()

        store = ExclusiveSqliteCounterStore(os.path.join(tmp, "x.db"))
        store.set_opening_balance("prepaid", 10**12)
        timed(store, work[:2000], "warm")
        part1.append(("SQLite exclusive, 1 thread, each waits (unary)",
                      median_of(lambda r: timed(store, chunks(r), f"x1{r}"))))
        part1.append(("SQLite exclusive, 1 thread, batches of 100",
                      median_of(lambda r: timed(store, chunks(r), f"xb{r}", batch=100))))
        part1.append(("SQLite exclusive, 8 threads, each waits",
                      median_of(lambda r: timed(store, chunks(r), f"x8{r}", threads=8))))
        part2.append(("SQLite exclusive", load(store, "xl")))
        store.close()

        proc, url = (None, args.redis_url) if args.redis_url else start_redis(tmp)
        if url:
            rstore = RedisCounterStore(url, prefix=f"bench{os.getpid()}:")
            rchunk = max(per_rep // 4, 8)
            rchunks = lambda r: work[r * rchunk:(r + 1) * rchunk]  # noqa: E731
            timed(rstore, work[:500], "warm")
            part1.append(("Redis, 1 thread (one EVALSHA round trip)",
                          median_of(lambda r: timed(rstore, rchunks(r), f"r1{r}"))))
            part1.append(("Redis, 8 threads",
                          median_of(lambda r: timed(rstore, rchunks(r), f"r8{r}", threads=8))))
            wall, cpu = median_of(lambda r: timed(rstore, groups[r * 20:(r + 1) * 20], f"rg{r}"))
            part1.append(("Redis, group send of 100, per recipient", (wall / 100, cpu / 100)))
            part2.append(("Redis", load(rstore, "rl")))
            rstore.close()
        if proc:
            proc.terminate()
            proc.wait()

    print(f"Part 1: one charge, 1 recipient, 3 limits ({os.cpu_count()} CPUs)")
    print(f"{'':<50} {'wall us':>9} {'CPU us':>9}")
    for name, (wall, cpu) in part1:
        print(f"{name:<50} {wall:9.1f} {cpu:9.1f}")
    print(f"\nPart 2: 8 threads, {args.work:.0f} us of other Python work per decision")
    print(f"{'':<50} {'decisions/s':>11} {'added us':>9} {'ratio':>6}")
    base = part2[0][1]
    for name, rate in part2:
        added = 1e6 / rate - 1e6 / base
        print(f"{name:<50} {rate:11.0f} {added:9.1f} {rate / base:6.2f}")
    if not url:
        print("(Redis rows skipped: no redis-server on PATH and no --redis-url)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
