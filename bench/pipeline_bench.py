"""In-process throughput of Pipeline.evaluate on the reference workload, and the daemon's start.

    python -m bench.pipeline_bench [--quick] [--messages N] [--profile] [--workdir DIR]

One thread, the daemon's own objects (Runtime, Pipeline, SqliteCounterStore, DecisionLog), the
workload of bench/workload.py. Three configurations, interleaved and each run 3 times (median):
  (a) rules + facts only: no counter store, no decision log; also with match_cache 0
      (a_nocache), and the match cache's hit rates; and (a_answer) with each decision's
      answer serialized as the daemon's servicer serializes it (answer_bytes)
  (b) + the SQLite counter store (idempotency recall, charge, remember)
  (c) + the decision log (its writer thread commits in the background; the run ends when
      every record is committed)
A first pass over the same stream warms the per-segment caches (mobile validity, carrier of
unassigned segments, routes) and is reported on its own: it is what a fresh daemon pays.
Every run gets a fresh counter database and log file, so no run sees another's counts.
Configs (b) and (c) serialize their answers too: the counter step builds the answer it keeps for
retries, and the daemon sends those bytes. The counter step's own cost is (b) against
(a_answer); against (a) it also holds the answer's serialization, which the daemon pays with
counters off as well.

"decisions/s" counts evaluate() calls, one per message (each answers 1-3 recipients);
recipient decisions/s are shown beside it.

Then the daemon itself: `smspolicy serve` on the workload, from process start to gRPC health
SERVING, and its VmRSS / VmHWM from /proc/PID/status once serving (3 fresh starts, median).
--profile prints where the time of (b) goes, by pipeline step and by function (cProfile).
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

START = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
STEP = 0.005           # synthetic seconds between messages: 200 messages/s of traffic
REPS = 3
BATCH = 100            # messages per evaluate_batch in config b_batch (the gRPC bench's batch size)
# (b) exclusive SQLite, the daemon's default, one evaluate() at a time; b_batch the same store
# through evaluate_batch; b_shared the shared mode (a transaction per charge), the old (b)
COUNTER_CONFIGS = ("b", "b_batch", "b_shared", "c")
CONFIGS = ("a", "a_nocache", "a_answer", "b", "b_batch", "b_shared", "c")
ANSWERED = ("a_answer",) + COUNTER_CONFIGS   # configs whose runs serialize every answer


@dataclass
class Run:
    messages: int
    recipients: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.wall

    @property
    def recipient_rate(self) -> float:
        return self.recipients / self.wall


def build_runtime(rules_dir: Path, data_dir: Path):
    """The daemon's Runtime, and its heap frozen after the load as the daemon freezes it:
    without that, full collections walk the loaded rule set and cost every config here
    7-11 % that the daemon does not pay."""
    from policy.daemon.runtime import Runtime
    from policy.daemon.server import freeze_heap
    data_dir.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(str(rules_dir), str(data_dir))
    freeze_heap()
    return runtime


class _Serving:
    """A stand-in Runtime that serves one LoadedPolicy."""

    def __init__(self, loaded):
        self.loaded = loaded

    def current(self):
        return self.loaded


def uncached(runtime) -> _Serving:
    """The runtime's rule set compiled again with match_cache 0: config (a_nocache), what (a)
    costs when every shard evaluation goes to durable_rules."""
    from dataclasses import replace
    from policy.engine.durable_engine import DurableRules
    from policy.daemon.server import freeze_heap
    loaded = runtime.current()
    stage = {s: [r for r in loaded.policy.rules if r.stage == s] for s in ("submit", "recipient")}
    serving = _Serving(replace(
        loaded, submit_rules=DurableRules(stage["submit"], "bench-submit-nocache", runtime.shard_size),
        recipient_rules=DurableRules(stage["recipient"], "bench-recipient-nocache", runtime.shard_size)))
    freeze_heap()
    return serving


def cache_hits(runtime) -> dict:
    """{stage: (shard lookups, answered from the match cache)} so far."""
    loaded = runtime.current()
    return {name: (rules.cache_lookups, rules.cache_hits)
            for name, rules in (("submit", loaded.submit_rules), ("recipient", loaded.recipient_rules))}


def make_pipeline(runtime, config: str, workdir: Path, tag: str):
    """A Pipeline as the daemon assembles it (its own make_counters and make_decision_log, on
    the default settings: the counter folds and the decision log in helper processes), for
    config 'a', 'b' or 'c'; fresh stores."""
    import os
    from policy.daemon.pipeline import Pipeline
    from policy.daemon.server import make_counters, make_decision_log
    from policy.settings import Settings
    counters = log = None
    settings = Settings(data_dir=str(workdir / f"data-{tag}"),
                        counters_sqlite_mode="shared" if config == "b_shared" else "exclusive")
    os.makedirs(settings.data_dir, exist_ok=True)
    if config in COUNTER_CONFIGS:
        counters = make_counters(settings)
        for account in runtime.current().policy.accounts.values():
            if account.billing == "prepaid":   # as Daemon._on_loaded does
                counters.set_opening_balance(account.id, account.balance)
    if config == "c":
        log = make_decision_log(settings, None)
    return Pipeline(runtime, counters, log)


def close_pipeline(pipeline) -> None:
    if pipeline.decision_log is not None:
        pipeline.decision_log.close()
    if pipeline.counters is not None:
        pipeline.counters.close()


def timed_run(pipeline, subs: list, batch: int = 0, answer: bool = False) -> Run:
    """batch > 0: Pipeline.evaluate_batch over `batch` messages at a time (the EvaluateBatch
    path: the counter journal is waited for once per batch); 0: evaluate() one by one, each
    answer waiting for its own charge to be committed (what a lone unary call pays).
    answer: each decision's EvaluateResponse bytes are made as the daemon makes them."""
    from policy.daemon.service import answer_bytes
    evaluate = pipeline.evaluate
    recipients = 0
    wall, cpu = time.perf_counter(), time.process_time()
    if batch:
        for first in range(0, len(subs), batch):
            chunk = subs[first:first + batch]
            # one clock per batch, as the daemon takes it; the synthetic time still advances
            for d in pipeline.evaluate_batch(chunk, START + first * STEP):
                if isinstance(d, Exception):
                    raise d
                if answer:
                    answer_bytes(d)
            recipients += sum(len(s.destinations) for s in chunk)
    else:
        for i, sub in enumerate(subs):
            d = evaluate(sub, START + i * STEP)
            if answer:
                answer_bytes(d)
            recipients += len(sub.destinations)
    if pipeline.decision_log is not None and not pipeline.decision_log.flush(timeout=120):
        raise RuntimeError("decision log did not commit the run's records within 120 s")
    return Run(len(subs), recipients, time.perf_counter() - wall, time.process_time() - cpu)


def outcome_mix(rules_dir: Path, subs) -> collections.Counter:
    """What the rules decide for the stream (no counters): one count per recipient, or per
    message when the submit is refused as a whole."""
    with tempfile.TemporaryDirectory() as tmp:
        runtime = build_runtime(Path(rules_dir), Path(tmp))
        pipeline = make_pipeline(runtime, "a", Path(tmp), "mix")
        mix: collections.Counter = collections.Counter()
        for i, sub in enumerate(subs):
            d = pipeline.evaluate(sub, START + i * STEP)
            if d.submit_result:
                mix[f"submit result {d.submit_result}"] += 1
            for r in d.recipients:
                mix[r.action if r.action != "reject" else f"reject {r.code}"] += 1
        runtime.close()
        return mix


def measure(rules_dir: Path, subs: list, workdir: Path, reps: int = REPS, log=print) -> dict:
    """{'cold': Run, 'a': [Run]*reps, 'b': [...], 'c': [...]}."""
    runtime = build_runtime(rules_dir, workdir / "var")
    out: dict = {k: [] for k in CONFIGS}
    pipeline = make_pipeline(runtime, "a", workdir, "cold")
    out["cold"] = timed_run(pipeline, subs)
    out["cache_cold"] = cache_hits(runtime)
    log(f"  first pass, cold caches: {out['cold'].rate:8.0f} decisions/s")
    nocache = uncached(runtime)
    for rep in range(reps):
        for config in CONFIGS:   # interleaved: a load spike hits every config alike
            pipeline = make_pipeline(nocache if config == "a_nocache" else runtime, config, workdir,
                                     f"{config}{rep}")
            run = timed_run(pipeline, subs, BATCH if config == "b_batch" else 0, config in ANSWERED)
            close_pipeline(pipeline)
            out[config].append(run)
            log(f"  run {rep + 1} ({config}): {run.rate:8.0f} decisions/s, "
                f"{run.recipient_rate:8.0f} recipient decisions/s, cpu {run.cpu / run.wall:4.2f} of wall")
    out["cache"] = cache_hits(runtime)
    nocache.loaded.close()
    runtime.close()
    return out


def median_rate(runs: list[Run]) -> float:
    return statistics.median(r.rate for r in runs)


def median_recipient_rate(runs: list[Run]) -> float:
    return statistics.median(r.recipient_rate for r in runs)


# ---------------------------------------------------------------------- profile
STEPS = (  # (label, file suffix, function name): cumulative time of each pipeline step
    ("1+2 message facts", "facts/builder.py", "message_facts"),
    ("2 recipient facts", "facts/builder.py", "recipient_facts"),
    ("3 rules (durable_rules)", "engine/durable_engine.py", "match"),
    ("4 counters: recall", "counters/sqlite_store.py", "recall"),
    ("4 counters: limits + charge", "daemon/pipeline.py", "_limits"),
    ("4 counters: serialize answer", "daemon/convert.py", "decision_to_response"),
    ("4 counters: remember", "counters/sqlite_store.py", "remember"),
    ("5 decision log append", "daemon/pipeline.py", "_log"),
    ("decision id (uuid4)", "uuid.py", "uuid4"),
)


def profile(rules_dir: Path, subs: list, workdir: Path, config: str = "b", top: int = 25) -> str:
    """cProfile of one warm run of `config`: per-step cumulative µs per decision, then the
    functions with the most own time."""
    runtime = build_runtime(rules_dir, workdir / "var-profile")
    timed_run(make_pipeline(runtime, "a", workdir, "pwarm"), subs)    # warm the caches
    pipeline = make_pipeline(runtime, config, workdir, f"prof-{config}")
    prof = cProfile.Profile()
    prof.enable()
    run = timed_run(pipeline, subs)
    prof.disable()
    close_pipeline(pipeline)
    runtime.close()
    stats = pstats.Stats(prof)
    per = 1e6 / run.messages
    lines = [(f"cProfile of config ({config}), {run.messages} messages / {run.recipients} recipients; "
              f"µs per decision (profiler overhead included: {run.rate:.0f} decisions/s under it)")]
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in stats.stats.items())
    lines.append(f"  {'total':<34} {total * per:8.1f}")
    for label, suffix, name in STEPS:
        cum = sum(ct for (file, _, fn), (_, _, _, ct, _) in stats.stats.items()
                  if fn == name and file.endswith(suffix))
        lines.append(f"  {label:<34} {cum * per:8.1f}")
    lines.append(f"  top {top} functions by own time (µs per decision, calls per decision):")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (file, line, fn), (cc, nc, tt, ct, _) in rows:
        where = f"{_short(file)}:{line}({fn})"
        lines.append(f"  {tt * per:8.1f} own {ct * per:8.1f} cum {nc / run.messages:6.2f}x  {where}")
    return "\n".join(lines)


def _short(path: str) -> str:
    for marker in ("/policy/", "/site-packages/", "/lib/python3"):
        if marker in path:
            return path[path.index(marker) + 1:]
    return path


# ---------------------------------------------------------------------- the daemon's start
def daemon_start(rules_dir: Path, workdir: Path, reps: int = REPS, log=print) -> dict:
    """Fresh `smspolicy serve` processes on the workload: seconds to SERVING, VmRSS, VmHWM."""
    from .grpc_bench import DaemonProcess
    starts, rss, hwm = [], [], []
    for rep in range(reps):
        data = workdir / f"start-{rep}"
        with DaemonProcess(rules_dir, data) as d:
            starts.append(d.start_seconds)
            status = d.memory()
            rss.append(status["VmRSS"])
            hwm.append(status["VmHWM"])
        shutil.rmtree(data, ignore_errors=True)
        log(f"  start {rep + 1}: {starts[-1]:5.2f} s to SERVING, VmRSS {rss[-1]:6.1f} MB, "
            f"VmHWM {hwm[-1]:6.1f} MB")
    return {"start_s": statistics.median(starts), "rss_mb": statistics.median(rss),
            "hwm_mb": statistics.median(hwm), "starts": starts}


def main(argv: list[str] | None = None) -> int:
    from .workload import FULL, QUICK, Workload
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small workload and stream (smoke run)")
    ap.add_argument("--messages", type=int, default=0, help="messages per run (default 20000, quick 1000)")
    ap.add_argument("--profile", action="store_true", help="also profile config (b) with cProfile")
    ap.add_argument("--no-daemon", action="store_true", help="skip the daemon start measurement")
    ap.add_argument("--workdir", type=Path, help="keep files here (default: a temporary folder)")
    args = ap.parse_args(argv)
    n = args.messages or (1000 if args.quick else 20_000)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="smspolicy-bench-"))
    try:
        w = Workload(QUICK if args.quick else FULL)
        rules = w.write(workdir / "rules")
        subs = list(w.messages(n))
        print(f"in process, {n} messages, {sum(len(s.destinations) for s in subs)} recipients:")
        res = measure(rules, subs, workdir)
        a, b, c = (median_rate(res[k]) for k in "abc")
        print(f"(a) rules+facts        {a:8.0f} decisions/s  {1e6 / a:7.1f} µs/decision  "
              f"{median_recipient_rate(res['a']):8.0f} recipient decisions/s")
        a0 = median_rate(res["a_nocache"])
        print(f"    match_cache 0      {a0:8.0f} decisions/s  {1e6 / a0:7.1f} µs/decision  "
              f"(CPU {statistics.median(r.cpu / r.messages for r in res['a']) * 1e6:5.1f} µs with the "
              f"cache, {statistics.median(r.cpu / r.messages for r in res['a_nocache']) * 1e6:5.1f} without)")
        print("    match cache hits: " + ", ".join(
            f"{stage} {hits / max(looked, 1):.1%} of {looked} shard lookups "
            f"(first pass {res['cache_cold'][stage][1] / max(res['cache_cold'][stage][0], 1):.1%})"
            for stage, (looked, hits) in res["cache"].items()))
        print(f"(b) + SQLite counters  {b:8.0f} decisions/s  {1e6 / b:7.1f} µs/decision  ratio {b / a:4.2f}")
        print(f"(c) + decision log     {c:8.0f} decisions/s  {1e6 / c:7.1f} µs/decision  ratio {c / a:4.2f}")
        cpu = {k: statistics.median(r.cpu / r.messages for r in res[k]) * 1e6 for k in CONFIGS}
        aa = median_rate(res["a_answer"])
        print(f"    + answer bytes     {aa:8.0f} decisions/s  {1e6 / aa:7.1f} µs/decision  "
              f"(the answer serialized as the daemon does: {1e6 / aa - 1e6 / a:5.1f} µs)")
        for k, label in (("b", "exclusive SQLite, one by one"), ("b_batch", f"exclusive SQLite, batches of {BATCH}"),
                         ("b_shared", "shared SQLite, one by one")):
            rate = median_rate(res[k])
            print(f"counter step ({label}) adds {1e6 / rate - 1e6 / aa:6.1f} µs wall, "
                  f"{cpu[k] - cpu['a_answer']:6.1f} µs CPU (all threads) per decision "
                  f"(beside (a) without answers: {1e6 / rate - 1e6 / a:6.1f} wall)")
        if args.profile:
            print(profile(rules, subs[: max(n // 4, 500)], workdir))
        if not args.no_daemon:
            d = daemon_start(rules, workdir)
            print(f"daemon start {d['start_s']:.2f} s, VmRSS {d['rss_mb']:.0f} MB, VmHWM {d['hwm_mb']:.0f} MB")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
