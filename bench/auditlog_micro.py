"""Micro-benchmark of the decision log: the writer's cost per record in each file format,
append() on the caller's thread, sustained writes, queries.

    PYTHONPATH=. python bench/auditlog_micro.py [--n 50000] [--query-records 1000000] [--dir DIR]
                                                [--writer-prefill 100000] [--only-writer]

Records look like the daemon's: the pipeline's facts (37 message facts, 23 per recipient, the
shipped fact names), counter values as the SQLite store reports them, matches, per-recipient
results, over 200 accounts and 1-3 destinations drawn from two million numbers.

"writer" times the writer thread's work (DecisionLog._write, plus the bulk index fill of /2)
on batches of 100 and 1000 records (the daemon's writer commits what is queued: hundreds under
load), for format /1 (the old code path: every JSON column encoded, then
the whole row encoded again, escaped, to be hashed; an index insert per record and number)
and format /2, interleaved, 3 rounds, median. CPU time of the process (time.process_time)
and wall time, per record, on an empty file and after --writer-prefill records (the cost of
random index inserts grows with the file). The query part builds a log of --query-records
decisions with the real writer (or reuses <dir>/query.db when it already holds that many) and
times indexed queries on it.
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
from policy.audit.schema import FORMAT_V1, FORMAT_V2

ACCOUNTS = [f"9{i:05d}" for i in range(200)]
CODES = ["MA:0001", "MA:0023", "MA:0022", "MA:0002", "MA:0033", None, None, None, None, None]
BASE_TS = 1_714_521_600.0


def number(rng: random.Random) -> str:
    return f"13{rng.randrange(10_000_000, 12_000_000):09d}"


SIGNATURES = ["【顺丰速运】", "【星河教育】", "【博远商城】", "【工商银行】"]
CHANNELS = ["ch-cmcc-a", "ch-cucc-a", "ch-ctcc-a"]


def message_facts(account: str, content: str, n_dests: int) -> dict:
    return {
        "_m": 1, "account__id": account, "account__status": "active", "account__access_mode": "cmpp",
        "account__billing": "postpaid", "account__channel_mode": "virtual", "account__allow_extension": True,
        "account__signature_check": True, "account__one_customer_one_signature": False,
        "account__content_filing": "off", "account__audit_mode": "none", "account__intercept_mode": "reject",
        "account__max_length": 1000, "message__length": len(content), "message__segments": 1 + len(content) // 70,
        "message__empty": False, "message__over_platform_max": False, "message__over_account_max": False,
        "message__msg_fmt": 8, "message__msg_fmt_allowed": True, "message__fee_code": "0",
        "message__fee_code_allowed": True, "message__src_id": "1069000481234", "message__src_id_valid": True,
        "message__src_id_extended": True, "message__dest_count": n_dests, "message__dest_malformed": False,
        "message__signature": content[:content.index("】") + 1], "message__has_signature": True,
        "message__signature_registered": True, "message__in_send_window": True, "message__keyword_groups": [],
        "message__template_matched": False, "message__template_id": "", "message__content": content,
        "message__parts": 1, "message__hour": 10,
    }


def recipient_facts(number: str, channel: str, blacklisted: bool) -> dict:
    return {
        "recipient__number": number, "recipient__length_ok": True, "recipient__valid": True,
        "recipient__segment": number[:7], "recipient__segment_assigned": True, "recipient__carrier": "cmcc",
        "recipient__province": "广东", "recipient__city": "深圳", "recipient__region_blocked": False,
        "recipient__blacklisted__global": blacklisted, "recipient__blacklisted__customer": False,
        "recipient__blacklisted__file": False, "recipient__blacklisted__api": False,
        "recipient__segment_blacklisted__global": False, "recipient__lists": [],
        "recipient__blacklisted__channel": False, "recipient__segment_blacklisted__channel": False,
        "route__found": True, "route__channel": channel, "channel__run_mode": "normal",
        "channel__supports_format": True, "channel__supports_long": True, "channel__over_max_length": False,
    }


def record(i: int, rng: random.Random) -> dict:
    account = ACCOUNTS[rng.randrange(len(ACCOUNTS))]
    dests = [number(rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    code = CODES[rng.randrange(len(CODES))]
    rule = None if code is None else f"rule-{code[3:]}"
    channel = CHANNELS[rng.randrange(len(CHANNELS))]
    content = (f"{SIGNATURES[i % len(SIGNATURES)]}您的快件{i}已到达深圳南山站，取件码{i % 1000000:06d}，"
               "请于18:00前领取，详询95338。")
    counters = []
    for n, d in enumerate(dests):
        if rule and n == 0:
            continue
        counters += [[f"a:account-daily-volume:{account}:day1:20514", rng.randrange(100000), 1000000,
                      "account-daily-volume"],
                     [f"c:channel-volume:{channel}:minute1:29540760", rng.randrange(2000), 60000, "channel-volume"],
                     [f"cn:channel-number-daily:{channel}:{d}:day1:20514", rng.randrange(5), 50,
                      "channel-number-daily"],
                     [f"cc:channel-same-content-hourly:{channel}:{i:016x}:hour1:492346", 0, 100000,
                      "channel-same-content-hourly"]]
    return {
        "decision_id": f"{i:032x}",
        "ts": BASE_TS + i * 0.01,
        "request_id": f"gw1-{i}",
        "frontend_id": "gw-1",
        "account_id": account,
        "src_id": "10690001234567",
        "destinations": dests,
        "content": content,
        "msg_fmt": 8,
        "facts": {"message": message_facts(account, content, len(dests)),
                  "recipients": [recipient_facts(d, channel, code == "MA:0001" and n == 0)
                                 for n, d in enumerate(dests)]},
        "counters": counters,
        "rules_version": "9f2c4e7a1b3d5f60",
        "matches": [] if rule is None else [
            {"rule_id": rule, "code": code, "priority": 900, "mode": "enforce", "recipient_index": 0}],
        "results": {"submit_result": 0, "submit_rule_id": "", "recipients": [
            {"destination": d, "action": "reject" if (rule and n == 0) else "accept",
             "code": code if (rule and n == 0) else "", "rule_id": rule if (rule and n == 0) else "",
             "channel_id": channel} for n, d in enumerate(dests)],
            "balance": None, "errors": []},
    }


def writer_cost(folder: str, fmt: str, prefill: int, records: list[dict], batch: int = 100) -> tuple[float, float, int]:
    """CPU and wall microseconds per record of the writer thread's work on `records` (after
    `prefill` records written the same way), and bytes per record on disk."""
    path = os.path.join(folder, f"writer-{fmt[-1]}-{prefill}.db")
    log = DecisionLog(path, sync="normal", log_format=fmt)
    log.close()
    log._open()   # the writer's own methods, on this thread: no queue, no thread switches
    rng = random.Random(11)

    def write(rs: list[dict]) -> None:
        for first in range(0, len(rs), batch):
            log._write(rs[first:first + batch])
            log._maybe_index()

    for first in range(0, prefill, 10_000):
        write([record(i, rng) for i in range(first, min(first + 10_000, prefill))])
    cpu, wall = time.process_time(), time.perf_counter()
    write(records)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    log._conn.close()
    size = os.path.getsize(path) // (prefill + len(records))
    for suffix in ("", "-wal", "-shm", ".lock"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return cpu / len(records) * 1e6, wall / len(records) * 1e6, size


def writer_table(folder: str, n: int, prefill: int, batches: list[int], rounds: int = 3) -> None:
    import copy
    rng = random.Random(5)
    template = [record(10_000_000 + i, rng) for i in range(n)]
    for pre, batch in [(0, batches[0]), *((prefill, b) for b in batches)]:
        got: dict[str, list] = {FORMAT_V1: [], FORMAT_V2: []}
        for _ in range(rounds):
            for fmt in (FORMAT_V1, FORMAT_V2):   # interleaved: both see the same machine
                got[fmt].append(writer_cost(folder, fmt, pre, copy.deepcopy(template), batch))
        for fmt, runs in got.items():
            cpu = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            print(f"  writer {fmt[-2:]} after {pre:>7} records, batches of {batch:>4}: {cpu:6.1f} µs CPU, "
                  f"{wall:6.1f} µs wall per record (runs {', '.join(f'{r[0]:.1f}' for r in runs)}), "
                  f"{runs[0][2]} bytes per record on disk")


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
    ap.add_argument("--writer-prefill", type=int, default=100_000,
                    help="records already in the file for the second writer row")
    ap.add_argument("--writer-n", type=int, default=10_000, help="records timed per writer run")
    ap.add_argument("--writer-batches", default="100,1000",
                    help="records per commit, comma-separated (the daemon's writer takes what is queued)")
    ap.add_argument("--only-writer", action="store_true", help="only the writer rows")
    args = ap.parse_args()
    print(f"writer thread, {args.writer_n} records per run:")
    with tempfile.TemporaryDirectory() as tmp:
        writer_table(tmp, args.writer_n, args.writer_prefill, [int(b) for b in args.writer_batches.split(",")])
    if args.only_writer:
        return
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
