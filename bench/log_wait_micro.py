"""How long an answer waits for its decision-log record: append one record, wait_durable, as a
unary Evaluate does, for the log writer in a thread and in a child process, with the daemon's
other threads idle and with one CPU-bound thread beside it, at several GIL switch intervals.

    .venv/bin/python -m bench.log_wait_micro [--records 500] [--sync normal|full]
                                             [--intervals 5,1,0.2]

Each line: p50 / p90 / p99 of the wait in ms over --records records, one every 2 ms. The busy
thread stands in for gRPC threads deciding other messages: a thread woken by I/O (the writer
process's "committed" frame, read by the log's reader thread; the waiting call itself) gets the
GIL only when the busy thread gives it up, which CPython forces every switch interval (5 ms by
default, sys.setswitchinterval).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path


def _busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def measure(log, records: int, busy: bool, start: int) -> list[float]:
    from .auditlog_micro import record   # a record as the daemon logs it
    rng = random.Random(start)
    stop = threading.Event()
    spinner = threading.Thread(target=_busy, args=(stop,), daemon=True)
    if busy:
        spinner.start()
    waits = []
    try:
        for i in range(records):
            log.append(record(start + i, rng))
            t = time.perf_counter()
            if not log.wait_durable(log.mark(), 5.0):
                raise RuntimeError("a record was not committed within 5 s")
            waits.append((time.perf_counter() - t) * 1e3)
            time.sleep(0.002)
    finally:
        stop.set()
        if busy:
            spinner.join()
    return sorted(waits)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=500)
    ap.add_argument("--sync", default="normal", choices=("normal", "full"))
    ap.add_argument("--intervals", default="5,1,0.2", help="switch intervals in ms")
    args = ap.parse_args(argv)
    from policy.audit.decision_log import DecisionLog
    from policy.audit.log_process import DecisionLogProcess
    default = sys.getswitchinterval()
    n = 0
    with tempfile.TemporaryDirectory() as d:
        for writer, cls in (("thread", DecisionLog), ("process", DecisionLogProcess)):
            log = cls(str(Path(d) / f"decisions-{writer}.db"), sync=args.sync)
            try:
                measure(log, 50, False, n)   # warm: the file and its first pages exist
                n += 50
                for interval in (float(x) for x in args.intervals.split(",")):
                    sys.setswitchinterval(interval / 1000)
                    for busy in (False, True):
                        w = measure(log, args.records, busy, n)
                        n += args.records
                        k = len(w)
                        print(f"writer {writer:<7} switch {interval:>4g} ms  {'busy' if busy else 'idle'}: "
                              f"p50 {w[k // 2]:5.2f}  p90 {w[int(k * .9)]:5.2f}  p99 {w[int(k * .99)]:6.2f} ms",
                              flush=True)
            finally:
                sys.setswitchinterval(default)
                log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
