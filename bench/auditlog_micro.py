"""Micro-benchmark of the decision log: append() on the caller's thread, sustained writes, queries.

    PYTHONPATH=. python bench/auditlog_micro.py [--n 50000] [--query-records 1000000] [--dir DIR]

Records look like the daemon's (~1.5 KB stored: facts of one message and its recipients, counter
values, matches, per-recipient results), over 200 accounts and 1-3 destinations drawn from two
million numbers. The query part builds a log of --query-records decisions with the real writer
(or reuses <dir>/query.db when it already holds that many) and times indexed queries on it.
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time

from policy.audit.decision_log import DecisionLog
from policy.audit.query import query

ACCOUNTS = [f"9{i:05d}" for i in range(200)]
CODES = ["MA:0001", "MA:0023", "MA:0022", "MA:0002", "MA:0033", None, None, None, None, None]
BASE_TS = 1_714_521_600.0


def number(rng: random.Random) -> str:
    return f"13{rng.randrange(10_000_000, 12_000_000):09d}"


def record(i: int, rng: random.Random) -> dict:
    account = ACCOUNTS[rng.randrange(len(ACCOUNTS))]
    dests = [number(rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    code = CODES[rng.randrange(len(CODES))]
    rule = None if code is None else f"rule-{code[3:]}"
    per_recipient = [{"number__carrier": "cmcc", "number__province": "广东", "blacklist__global": code == "MA:0001",
                      "blacklist__customer": code == "MA:0023", "route__channel": "cmcc-gd-01"}
                     for _ in dests]
    return {
        "decision_id": f"{i:032x}",
        "ts": BASE_TS + i * 0.01,
        "request_id": f"gw1-{i}",
        "frontend_id": "gw-1",
        "account_id": account,
        "src_id": "10690001234567",
        "destinations": dests,
        "content": f"【顺丰速运】您的快件{i}已到达深圳南山站，取件码{i % 1000000:06d}，请于18:00前领取，详询95338。",
        "msg_fmt": 8,
        "facts": {"account__id": account, "account__status": "active", "account__signature_check": True,
                  "account__content_filing": "reject", "message__length": 52, "message__segments": 1,
                  "message__signature": "顺丰速运", "message__template": "tpl-sf-pickup",
                  "message__keyword_groups": [], "account__audit_mode": "none",
                  "account__intercept_mode": "reject", "time__local": "2024-05-01T08:00:00+08:00",
                  "recipients": per_recipient},
        "counters": {"account:day": rng.randrange(100000), "account_number:day": rng.randrange(5),
                     "channel:minute": rng.randrange(2000)},
        "rules_version": "9f2c4e7a1b3d5f60" + "0" * 48,
        "matches": [] if rule is None else [
            {"rule_id": rule, "code": code, "priority": 900, "mode": "enforce", "recipient_index": 0}],
        "results": {"submit_result": 0, "submit_rule_id": None, "recipients": [
            {"destination": d, "action": "reject" if (rule and n == 0) else "accept",
             "code": code if n == 0 else None, "rule_id": rule if n == 0 else None,
             "channel_id": None if (rule and n == 0) else "cmcc-gd-01"} for n, d in enumerate(dests)]},
    }


def append_cost(path: str, records: list[dict]) -> tuple[float, float, float, float]:
    """Mean, p50, p99 and p99.9 microseconds per append() while the writer runs (the mean
    includes the moments the writer thread holds the GIL)."""
    log = DecisionLog(path, queue_max=len(records) + 1)
    samples = []
    clock = time.perf_counter_ns
    for r in records:
        t0 = clock()
        log.append(r)
        samples.append(clock() - t0)
    log.close()
    samples.sort()
    return (statistics.fmean(samples) / 1000, samples[len(samples) // 2] / 1000,
            samples[int(len(samples) * 0.99)] / 1000, samples[int(len(samples) * 0.999)] / 1000)


def sustained(path: str, records: list[dict]) -> tuple[float, int]:
    """Appends per second from the first append until everything is durable; bytes per record."""
    log = DecisionLog(path, queue_max=10000)
    t0 = time.perf_counter()
    for r in records:
        log.append(r)
    log.flush()
    elapsed = time.perf_counter() - t0
    log.close()
    return len(records) / elapsed, os.path.getsize(path) // len(records)


def build(path: str, n: int) -> None:
    if os.path.exists(path):
        have = sqlite3.connect(path).execute("SELECT count(*) FROM decisions").fetchone()[0]
        if have >= n:
            return
        raise SystemExit(f"{path} holds {have} records, fewer than {n}; remove it first")
    rng = random.Random(7)
    log = DecisionLog(path, queue_max=20000)
    t0 = time.perf_counter()
    for i in range(n):
        log.append(record(i, rng))
        if i and i % 200_000 == 0:
            print(f"  built {i} records, {i / (time.perf_counter() - t0):,.0f}/s")
    log.close(timeout=600)
    print(f"  built {n} records in {time.perf_counter() - t0:.1f} s")


def timed(label: str, **filters) -> None:
    paths = filters.pop("paths")
    t0 = time.perf_counter()
    it = query(paths, **filters)
    first = next(it, None)
    t_first = time.perf_counter() - t0
    count = 0 if first is None else 1 + sum(1 for _ in it)
    total = time.perf_counter() - t0
    print(f"  {label:<44} {count:>7} rows  first {t_first * 1000:8.1f} ms  all {total * 1000:8.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="records for the append/sustained runs")
    ap.add_argument("--query-records", type=int, default=1_000_000)
    ap.add_argument("--dir", help="where to keep the query log (reused between runs)")
    args = ap.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        mean, p50, p99, p999 = append_cost(os.path.join(tmp, "cost.db"), [record(i, rng) for i in range(args.n)])
        print(f"append() on the caller's thread: mean {mean:.2f} µs, p50 {p50:.2f} µs, p99 {p99:.2f} µs, "
              f"p99.9 {p999:.2f} µs ({args.n} appends, writer running)")
        rate, size = sustained(os.path.join(tmp, "rate.db"), [record(i, rng) for i in range(args.n)])
        print(f"sustained: {rate:,.0f} decisions/s appended and committed ({size} bytes per record on disk)")
    folder = args.dir or tempfile.mkdtemp(prefix="auditlog-bench-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "query.db")
    print(f"query log {path}:")
    build(path, args.query_records)
    probe = random.Random(7)
    sample = record(0, probe)
    by_number = sample["destinations"][0]
    conn = sqlite3.connect(path)
    account = conn.execute("SELECT account_id FROM decisions WHERE seq = ?",
                           (args.query_records // 2,)).fetchone()[0]
    conn.close()
    paths = [path]
    timed(f"account={account}", paths=paths, account=account)
    timed(f"account={account}, limit 100", paths=paths, account=account, limit=100)
    timed(f"number={by_number}", paths=paths, number=by_number)
    timed("account + 1 hour", paths=paths, account=account, since=BASE_TS + 3600, until=BASE_TS + 7200)
    timed("1 minute, all accounts", paths=paths, since=BASE_TS + 3600, until=BASE_TS + 3660)
    timed("code=MA:0033 (scan), limit 100", paths=paths, code="MA:0033", limit=100)
    timed("code=MA:0033 + account", paths=paths, code="MA:0033", account=account)


if __name__ == "__main__":
    main()
