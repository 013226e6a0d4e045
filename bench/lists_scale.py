"""Scale of the number lists: 1M against 10M blacklisted numbers (issue 8, item 4).

    python -m bench.lists_scale [--quick] [--sizes 1000000,10000000] [--messages N] [--runs N]
                                [--starts N] [--workdir DIR]

For each size, the reference workload (bench/workload.py --numbers N: the same rules, accounts,
segments, keywords and templates, the listed numbers in the same shares over the global,
customer, channel, API and file lists) is written by a child process, then:
  * daemon start: `smspolicy serve` from process start to gRPC health SERVING, and its VmRSS /
    VmHWM once serving (fresh data folder each start, so the API blacklist is seeded each time);
  * lookup cost: one worker process per size loads that size's Runtime (as a daemon holds one)
    and times, runs interleaved across the workers, over the *same* Submissions (drawn from the
    smallest workload),
      - the facts step: message facts + every recipient's facts, per message (as the pipeline)
      - the list lookups alone, per number: ListIndex's number dict and segment prefixes, the
        API blacklist and the watched file blacklist, for the messages' recipients and 400,000
        more numbers of their segments, each looked up once per run.
The figure is the ratio largest/smallest of those costs: a lookup must not grow with the list.
"""
from __future__ import annotations

import argparse
import gc
import json
import pickle
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (100_000, 1_000_000)
MESSAGES = 5_000
RUNS = 5
STARTS = 3
LOOKUPS = 400_000   # distinct numbers per lookup pass, beyond the messages' recipients


def write_workload(dest: Path, numbers: int, quick: bool) -> float:
    """The workload with `numbers` listed numbers, written by a child (its generator's memory
    goes with it); seconds taken."""
    args = [sys.executable, "-m", "bench.workload", str(dest), "--numbers", str(numbers)]
    if quick:
        args.append("--quick")
    t = time.perf_counter()
    subprocess.run(args, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def daemon_starts(rules: Path, workdir: Path, reps: int, log=print) -> dict:
    from .grpc_bench import DaemonProcess
    starts, rss, hwm = [], [], []
    for rep in range(reps):
        data = workdir / f"start-{rep}"
        with DaemonProcess(rules, data, timeout=600) as d:
            starts.append(d.start_seconds)
            mem = d.memory()
            rss.append(mem["VmRSS"])
            hwm.append(mem["VmHWM"])
        shutil.rmtree(data, ignore_errors=True)
        log(f"    start {rep + 1}: {starts[-1]:6.2f} s to SERVING, VmRSS {rss[-1]:7.1f} MB, VmHWM {hwm[-1]:7.1f} MB")
    return {"start_s": statistics.median(starts), "rss_mb": statistics.median(rss),
            "hwm_mb": statistics.median(hwm), "starts": starts}


def measure(workdir: Path, sizes=SIZES, messages: int = MESSAGES, runs: int = RUNS, starts: int = STARTS,
            quick: bool = False, log=print) -> dict:
    """{'sizes': {n: {...}}, 'facts_ratio', 'lookup_ratio'} for the smallest and largest size."""
    from .workload import FULL, QUICK, Workload
    from dataclasses import replace
    sizes = sorted(sizes)
    out: dict = {"sizes": {}, "messages": messages, "runs": runs}
    dirs = {}
    for n in sizes:
        dirs[n] = workdir / f"rules-{n}"
        took = write_workload(dirs[n], n, quick)
        out["sizes"][n] = {"write_s": took}
        log(f"  {n:,} listed numbers: workload written in {took:.1f} s")
    # the Submissions, from the smallest workload (a Workload draws its listed recipients from
    # what it wrote, so it is written once more here, next to the others)
    small = Workload(replace(QUICK if quick else FULL, numbers=sizes[0]))
    small.write(workdir / "stream-rules")
    msgs = workdir / "messages.pkl"
    msgs.write_bytes(pickle.dumps(list(small.messages(messages, prefix="ls"))))
    shutil.rmtree(workdir / "stream-rules", ignore_errors=True)
    for n in sizes:
        log(f"  daemon start, {n:,} listed numbers:")
        out["sizes"][n].update(daemon_starts(dirs[n], workdir / f"daemon-{n}", starts, log))
    log("  facts step and list lookups: one process per size (as a daemon holds one), runs interleaved:")
    res = _interleaved(msgs, runs, {n: dirs[n] for n in sizes}, log)
    for n in sizes:
        out["sizes"][n].update(res[n])
    lo, hi = out["sizes"][sizes[0]], out["sizes"][sizes[-1]]
    out["facts_ratio"] = statistics.median(b / a for a, b in zip(lo["facts_us_runs"], hi["facts_us_runs"]))
    out["lookup_ratio"] = statistics.median(b / a for a, b in zip(lo["lookup_us_runs"], hi["lookup_us_runs"]))
    # by CPU time: steadier than wall time on the shared machine
    out["facts_cpu_ratio"] = statistics.median(b / a for a, b in zip(lo["facts_cpu_us_runs"], hi["facts_cpu_us_runs"]))
    out["lookup_cpu_ratio"] = statistics.median(b / a for a, b in zip(lo["lookup_cpu_us_runs"],
                                                                      hi["lookup_cpu_us_runs"]))
    out["small"], out["large"] = sizes[0], sizes[-1]
    return out


# ---------------------------------------------------------------------- the children: lookups
def _interleaved(msgs: Path, runs: int, dirs: dict, log=print) -> dict:
    """One worker process per size, each holding only its own Runtime; the parent has them
    time one run each in turn, so that a load spike hits every size alike."""
    workers = {}
    try:
        for n, rules in dirs.items():   # one at a time: the build times are not disturbed
            w = subprocess.Popen([sys.executable, "-m", "bench.lists_scale", "_worker", str(msgs), str(rules)],
                                 cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            workers[n] = w
            ready = json.loads(_line(w, n))
            log(f"    {n:,}: Runtime built in {ready['runtime_build_s']:.1f} s")
            workers[n].ready = ready
        res = {n: {**w.ready, "facts_us_runs": [], "facts_cpu_us_runs": [], "lookup_us_runs": [],
                   "lookup_cpu_us_runs": []} for n, w in workers.items()}
        for rep in range(runs):
            for n, w in workers.items():
                w.stdin.write("run\n")
                w.stdin.flush()
                for k, v in json.loads(_line(w, n)).items():
                    res[n][f"{k}_runs"].append(v)
            log(f"    run {rep + 1}: " + ", ".join(
                f"{n:,}: facts {r['facts_us_runs'][-1]:.1f} µs/message, lookups {r['lookup_us_runs'][-1]:.3f} µs/number"
                for n, r in res.items()))
        for r in res.values():
            for k in ("facts_us", "facts_cpu_us", "lookup_us", "lookup_cpu_us"):
                r[k] = statistics.median(r[f"{k}_runs"])
        return res
    finally:
        for w in workers.values():
            try:
                w.stdin.close()
            except OSError:
                pass
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()


def _line(w: subprocess.Popen, n: int) -> str:
    line = w.stdout.readline()
    if not line:
        raise RuntimeError(f"the lookup worker for {n:,} numbers exited with {w.wait()}")
    return line


def _worker(msgs_path: str, rules: str) -> int:
    """Builds the Runtime of `rules`, says so on stdout (one JSON line), then times one facts
    pass and one lookup pass per 'run' line on stdin, answering one JSON line each."""
    from policy.daemon.runtime import Runtime
    from policy.facts.numbers import normalize_number, number_key
    from .pipeline_bench import START, STEP
    subs = pickle.loads(Path(msgs_path).read_bytes())
    data = tempfile.mkdtemp(prefix="smspolicy-ls-")
    t = time.perf_counter()
    rt = Runtime(rules, data)
    build_s = time.perf_counter() - t
    try:
        lp = rt.current()
        others = [x.contains_key for x in (rt.api_blacklist, getattr(rt, "_file_blacklist", None)) if x is not None]
        accounts = [lp.policy.accounts[s.account_id] for s in subs]
        nows = [datetime.fromtimestamp(START + i * STEP, lp.tz) for i in range(len(subs))]
        numbers = [normalize_number(raw)[0] for s in subs for raw in s.destinations]
        recipients = len(numbers)
        # The lookup pass looks each number up once: repeating a few thousand numbers would keep
        # their slots of the big dict in the CPU caches and hide what a larger table costs. So the
        # recipients are followed by LOOKUPS more numbers of the same segments (deterministic).
        rnd = random.Random(8)
        segments = sorted({x[:7] for x in numbers if len(x) == 11 and x.isdigit()})
        seen = set(numbers)
        while len(numbers) < recipients + LOOKUPS:
            x = f"{rnd.choice(segments)}{rnd.randrange(10000):04d}"
            if x not in seen:
                seen.add(x)
                numbers.append(x)
        del seen
        keys = [number_key(x) for x in numbers]
        part = getattr(lp.facts, "recipient_part", None) or lp.facts.recipient_facts   # as the pipeline calls it

        def facts_pass() -> None:
            mfacts = lp.facts.message_facts
            for sub, account, now in zip(subs, accounts, nows):
                mf = mfacts(sub, account, now)
                for raw in sub.destinations:
                    part(mf, raw, account)

        def lookup_pass() -> int:
            """Every list lookup of a number: the number and segment indexes, the API and file blacklists."""
            lists = lp.facts.lists
            get, segment = lists.numbers.get, lists.segment
            hits = 0
            for number, key in zip(numbers, keys):
                listed = get(key) is not None
                listed |= bool(segment(number))
                for contains in others:
                    listed |= contains(key)
                hits += listed
            return hits

        listed = lookup_pass()
        facts_pass()   # warm: per-segment caches, the keyword automaton's pages
        gc.collect()
        print(json.dumps({"runtime_build_s": build_s, "listed_lookups": listed, "lookups": len(keys),
                          "recipients": recipients,
                          "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            w, c = time.perf_counter(), time.process_time()
            facts_pass()
            fw, fc = time.perf_counter() - w, time.process_time() - c
            w, c = time.perf_counter(), time.process_time()
            lookup_pass()
            lw, lc = time.perf_counter() - w, time.process_time() - c
            print(json.dumps({"facts_us": fw / len(subs) * 1e6, "facts_cpu_us": fc / len(subs) * 1e6,
                              "lookup_us": lw / len(keys) * 1e6, "lookup_cpu_us": lc / len(keys) * 1e6}), flush=True)
    finally:
        rt.close()
        shutil.rmtree(data, ignore_errors=True)
    return 0


def report(r: dict) -> str:
    lines = [f"{r['messages']} messages, medians of {r['runs']} runs:"]
    for n, s in r["sizes"].items():
        lines.append(f"  {n:>11,} numbers: start {s['start_s']:6.2f} s, VmRSS {s['rss_mb']:7.1f} MB "
                     f"(peak {s['hwm_mb']:7.1f}), facts {s['facts_us']:6.1f} µs/message, "
                     f"list lookups {s['lookup_us']:.3f} µs/number ({s['listed_lookups']:,} of "
                     f"{s['lookups']:,} numbers listed)")
    lines.append(f"  {r['large']:,} / {r['small']:,}: facts step ×{r['facts_ratio']:.2f} "
                 f"(CPU ×{r['facts_cpu_ratio']:.2f}), list lookups ×{r['lookup_ratio']:.2f} "
                 f"(CPU ×{r['lookup_cpu_ratio']:.2f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        return _worker(argv[1], argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} and small runs (smoke)")
    ap.add_argument("--sizes", help="comma-separated list sizes (default 1000000,10000000)")
    ap.add_argument("--messages", type=int, default=0, help=f"messages per run (default {MESSAGES}, quick 1000)")
    ap.add_argument("--runs", type=int, default=0, help=f"timed runs (default {RUNS}, quick 3)")
    ap.add_argument("--starts", type=int, default=0, help=f"daemon starts per size (default {STARTS}, quick 1)")
    ap.add_argument("--workdir", type=Path, help="keep files here (default: a temporary folder)")
    args = ap.parse_args(argv)
    q = args.quick
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else (QUICK_SIZES if q else SIZES)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="smspolicy-lists-"))
    try:
        r = measure(workdir, sizes, args.messages or (1000 if q else MESSAGES), args.runs or (3 if q else RUNS),
                    args.starts or (1 if q else STARTS), quick=q)
        print(report(r))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
