"""python -m bench [--quick] [--runs N] [--only SECTIONS] [--json PATH] [--profile] [--workdir DIR]

Every reference benchmark (issues 2, 3 and 8), one table. On one generated reference workload
(bench/workload.py) unless said otherwise:
  pipeline  Pipeline.evaluate in process, one thread: (a) rules + facts, (b) + SQLite counters,
            (c) + decision log; daemon start time and memory — bench/pipeline_bench.py
  grpc      the daemon over gRPC on loopback: batch, stream and paced unary (SQLite counters,
            counters off, counters and log off, Redis counters) beside a bare grpcio echo
            server answering with captured responses of the same size — bench/grpc_bench.py
  engine    the rules engine beside a peer: durable_rules vs the same rules as a zen-engine
            decision table, same facts, agreement required on every decision; and the full
            facts + rules pass with each — bench/engine_vs_zen.py
  frontend  the CMPP front-end end to end beside a codec echo — bench/frontend_e2e.py
  lists     1M vs 10M blacklisted numbers: daemon start, RSS, lookup cost — bench/lists_scale.py
  replay    exact replay of 1,000,000 logged decisions — bench/replay_bench.py (the logs are
            generated once into --replay-dir and reused by later runs)
and prints one table: metric, value, baseline, ratio (value / baseline), target. Figures are
medians of --runs runs (default 3; the runs of compared configurations interleaved, so that a
load spike on the shared machine hits them alike). The load average is sampled every 5 s and
printed with the table. --quick shrinks every size to a smoke test; its figures are not the
reference ones. --json writes every row and the raw per-run figures. Exit status 1 when a
section could not be measured or the two rules engines disagree.
"""
from __future__ import annotations

import argparse
import json
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

from . import engine_vs_zen, grpc_bench, lists_scale, pipeline_bench, replay_bench
from .workload import FULL, QUICK, Workload

SECTIONS = ("pipeline", "grpc", "engine", "frontend", "lists", "replay")


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
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False, cwd=repo).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, check=False, cwd=repo).stdout.strip()
        if changed:   # the figures are not those of the commit alone
            commit += " + uncommitted changes"
    except OSError:
        commit = "?"
    return [
        f"date {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, commit {commit}",
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
    """rows: (metric, value, target, baseline, ratio); printed as metric, value, baseline, ratio, target."""
    head = ("metric", "value", "baseline", "ratio", "target")
    cells = [head] + [(fmt(r[0]), fmt(r[1]), fmt(r[3]), "—" if r[4] is None else f"{r[4]:.2f}", fmt(r[2]) or "")
                      for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(5)]
    lines = []
    for k, r in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(widths[i]) if i in (0, 4) else c.rjust(widths[i])
                                       for i, c in enumerate(r)) + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 2) if i in (0, 4) else "-" * (w + 1) + ":"
                                        for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def _plain(x):
    """x with dataclass instances (the benches' Run, Rate...) turned into dicts, for the JSON."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "__dataclass_fields__"):
        return {k: _plain(getattr(x, k)) for k in x.__dataclass_fields__}
    return x


def pipeline_rows(p: dict, start: dict) -> list[tuple]:
    med, rmed = pipeline_bench.median_rate, pipeline_bench.median_recipient_rate
    a, b, c = med(p["a"]), med(p["b"]), med(p["c"])
    # the counter step's own cost is (b) against (a_answer): both serialize every answer
    aa = med(p["a_answer"])
    cpu = {k: statistics.median(r.cpu / r.messages for r in p[k]) * 1e6 for k in ("a", "a_answer", "b", "c")}
    added = 1e6 / b - 1e6 / aa
    rows = [
        ("in process (a) rules+facts, decisions/s", a, f"≥ 20,000: {verdict(a, 20_000, True)}", None, None),
        ("in process (a) recipient decisions/s", rmed(p["a"]), "", None, None),
        ("in process (a) µs/decision (CPU µs)", f"{1e6 / a:.1f} ({cpu['a']:.1f})", "", None, None),
        ("in process (a) first pass, cold caches, decisions/s", p["cold"].rate, "", a, p["cold"].rate / a),
        ("in process (a) + answer bytes (as the daemon answers), decisions/s", aa, "", a, aa / a),
        ("in process (b) + SQLite counters, decisions/s", b, "", aa, b / aa),
        ("counter step added µs/decision, SQLite, wall (b vs a + answer)", added,
         f"≤ 30: {verdict(added, 30, False)}", None, None),
        ("counter step added CPU µs/decision, SQLite (b vs a + answer)", cpu["b"] - cpu["a_answer"], "", None, None),
        ("counter step + answer bytes, µs/decision, wall (b vs a)", 1e6 / b - 1e6 / a, "", None, None),
        ("in process (c) + decision log, decisions/s", c, "", a, c / a),
        *[(f"in process {label}, decisions/s", med(p[k]), "", a, med(p[k]) / a)
          for k, label in (("a_nocache", "(a) with the match cache off"),
                           ("b_batch", f"(b) exclusive SQLite, evaluate_batch of {getattr(pipeline_bench, 'BATCH', '?')}"),
                           ("b_shared", "(b) shared SQLite mode, one by one")) if p.get(k)],
        ("daemon start to SERVING, s", start["start_s"], f"≤ 10: {verdict(start['start_s'], 10, False)}", None, None),
        ("daemon VmRSS after start, MB", start["rss_mb"], f"≤ 500: {verdict(start['rss_mb'], 500, False)}", None, None),
    ]
    return rows


def grpc_rows(g: dict) -> list[tuple]:
    rows = []
    mem = g["memory"].get("sqlite", {})
    if mem:
        rows.append(("daemon VmRSS / VmHWM after the gRPC runs, MB", f"{mem['VmRSS']:.0f} / {mem['VmHWM']:.0f}",
                     f"≤ 500: {verdict(mem['VmHWM'], 500, False)}", None, None))
    gm = grpc_bench.median
    for form, name in (("batch", "EvaluateBatch (100/batch, 4 in flight)"), ("stream", "EvaluateStream (2 streams)")):
        echo, sq, off = gm(g[form]["echo"]), gm(g[form]["sqlite"]), gm(g[form]["off"])
        rows.append((f"gRPC {name}, decisions/s, daemon as shipped (SQLite)", sq,
                     f"≥ 5,000: {verdict(sq, 5_000, True)}", echo, sq / echo))
        per_call = grpc_bench.BATCH if form == "batch" else 1   # a stream call per message
        rows.append((f"gRPC {name}, calls/s, daemon as shipped (SQLite)", sq / per_call, "",
                     echo / per_call, sq / echo))
        rows.append((f"gRPC {name}, decisions/s, counters off", off, "", echo, off / echo))
        bare = gm(g[form]["bare"])
        rows.append((f"gRPC {name}, decisions/s, counters and log off", bare, "", echo, bare / echo))
        rows.append((f"gRPC {name}, SQLite counters vs counters off", sq, "", off, sq / off))
        if "redis" in g[form]:
            rd = gm(g[form]["redis"])
            rows.append((f"gRPC {name}, Redis counters vs counters off", rd,
                         f"≥ 0.7× off: {verdict(rd / off, 0.7, True)}", off, rd / off))
    if "unary-max" in g:
        echo = gm(g["unary-max"]["echo"])
        for kind, label in (("sqlite", "daemon as shipped (SQLite)"), ("off", "counters off"),
                            ("bare", "counters and log off")):
            v = gm(g["unary-max"][kind])
            rows.append((f"gRPC unary Evaluate ({grpc_bench.UNARY_IN_FLIGHT} in flight), calls/s = decisions/s, "
                         f"{label}", v, "", echo, v / echo))
    pct = grpc_bench.median_pct
    sent = {k: statistics.median(r.achieved_rate for r in g["unary"][k]) for k in ("echo", "sqlite")}
    rows.append((f"gRPC unary Evaluate, calls/s sent (open loop, paced at {grpc_bench.UNARY_RATE}/s), SQLite",
                 sent["sqlite"], "", sent["echo"], sent["sqlite"] / sent["echo"]))
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


def engine_rows(e: dict) -> list[tuple]:
    d, z, sh = e["durable"], e["zen"], e["durable as shipped"]
    pd, pz, psh = e["pipeline durable"], e["pipeline zen"], e["pipeline durable as shipped"]
    c = e["counts"]
    hit = e.get("shipped cache hit rate")
    return [
        (f"rules engine, durable_rules, no match cache, decisions/s over {e['messages']:,} messages' facts",
         d["rate"], "", None, None),
        ("rules engine, zen-engine decision tables (peer), decisions/s, same facts", z["rate"], "",
         d["rate"], e["ratio"]),
        ("rules engine, zen speed ÷ durable speed by CPU time", e["cpu ratio"], "", None, None),
        ("rules engine, CPU µs per decision: durable / zen / zen evaluate() alone",
         f"{d['cpu_us']:.1f} / {z['cpu_us']:.1f} / {e['zen evaluate only']['cpu_us']:.1f}", "", None, None),
        ("rules engine, messages (stage evaluations) the two agree on",
         f"{c['messages']:,} ({c['evaluations']:,}) of {c['messages']:,}", "all: met", None, None),
        (f"rules engine, durable_rules as shipped (match cache {e.get('shipped cache size')}"
         f"{f', {hit:.0%} hits' if hit is not None else ''}), decisions/s", sh["rate"], "", d["rate"],
         sh["rate"] / d["rate"]),
        ("facts + rules, durable_rules no cache / as shipped, decisions/s",
         f"{fmt(pd['rate'])} / {fmt(psh['rate'])}", "", None, None),
        ("facts + rules, zen-engine, decisions/s", pz["rate"], "", pd["rate"], e["pipeline ratio"]),
        ("facts step alone, decisions/s", e["facts"]["rate"], "", None, None),
    ]


def lists_rows(r: dict) -> list[tuple]:
    small, large = r["sizes"][r["small"]], r["sizes"][r["large"]]
    s, l = f"{r['small'] / 1e6:g}M", f"{r['large'] / 1e6:g}M"
    return [
        (f"lists: daemon start to SERVING, s, {s} / {l} numbers", f"{small['start_s']:.2f} / {large['start_s']:.2f}",
         "", None, large["start_s"] / small["start_s"]),
        (f"lists: daemon VmRSS after start, MB, {s} / {l} numbers", f"{small['rss_mb']:.0f} / {large['rss_mb']:.0f}",
         f"{l} ≤ 2,000: {verdict(large['rss_mb'], 2000, False)}", None, large["rss_mb"] / small["rss_mb"]),
        (f"lists: facts step µs/decision, {l} vs {s} numbers", large["facts_us"], "",
         small["facts_us"], r["facts_ratio"]),
        (f"lists: facts step, ratio {l}/{s} by CPU time", r["facts_cpu_ratio"], "", None, None),
        (f"lists: list lookups µs/number, {l} vs {s} numbers", f"{large['lookup_us']:.3f}",
         f"no growth (≤ 1.2×): {verdict(r['lookup_ratio'], 1.2, False)}", f"{small['lookup_us']:.3f}", r["lookup_ratio"]),
        (f"lists: list lookups, ratio {l}/{s} by CPU time", r["lookup_cpu_ratio"], "", None, None),
    ]


def replay_rows(r: dict) -> list[tuple]:
    return [
        (f"exact replay of {r['decisions']:,} logged decisions, decisions/s", r["rate"], "", None, None),
        (f"exact replay of {r['decisions']:,} logged decisions, s", r["seconds"], f"≤ 60: {verdict(r['seconds'], 60, False)}",
         None, None),
        ("exact replay, decisions reproduced", r["reproduced"], f"100 %: {'met' if r['ok'] else 'MISSED'}", None, None),
    ]


# ---- issue 5's front-end chain (helper H3 owns bench/frontend_e2e.py) ----------------------------
# THE PLACE FOR THE FRONT-END. bench.frontend_e2e.run_bench(seconds=, runs=, verbose=) returns one
# dict per measured row (row, rate, p50_ms, p99_ms, ratio to the codec echo; the "chain" row —
# forwarder and simulator in the chain — counts accepted messages whose final report reached the
# client, and carries "unreported"). Without that callable, the script's own entry point runs as
# a child and its output is shown after the table.
# issue 5: the front-end with the daemon, >= 3,000 submits/s (closed loop: capacity) and p99 <= 20 ms
# at that load (the paced row: in closed loop p99 is set by the full windows, see frontend_e2e)
FRONTEND_TARGETS = {"daemon": ("≥ 3,000", 3_000, "", None), "paced": ("≥ 3,000", 3_000, "≤ 20", 20)}


def frontend_rows(quick: bool, runs: int, log, raw: dict | None = None) -> tuple[list[tuple], str]:
    from . import frontend_e2e
    seconds = 3.0 if quick else 10.0
    if not hasattr(frontend_e2e, "run_bench"):
        proc = subprocess.run([sys.executable, str(Path(frontend_e2e.__file__)), "--seconds", f"{seconds:g}"],
                              cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        if proc.returncode != 0:
            raise RuntimeError(f"bench/frontend_e2e.py exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return [], proc.stdout.strip()
    measured = frontend_e2e.run_bench(seconds=seconds, runs=runs, verbose=True)
    if raw is not None:
        raw["frontend"] = measured
    echo = next((r for r in measured if r["row"] == "echo"), None)
    labels = getattr(frontend_e2e, "LABELS", {})
    rows: list[tuple] = []
    for r in measured:
        if r["row"] == "echo":
            continue
        label = labels.get(r["row"], r["row"]).strip()
        unit = "accepted messages/s, submit to final report" if r["row"] == "chain" else "submits/s"
        rate_t, rate_min, p99_t, p99_max = FRONTEND_TARGETS.get(r["row"], ("", None, "", None))
        rows.append((f"front-end: {label}, {unit}", r["rate"],
                     f"{rate_t}: {verdict(r['rate'], rate_min, True)}" if rate_min else "",
                     echo and echo["rate"], r.get("ratio")))
        rows.append((f"front-end: {label}, p99 ms", r["p99_ms"],
                     f"{p99_t}: {verdict(r['p99_ms'], p99_max, False)}" if p99_max else "",
                     echo and echo["p99_ms"], echo and r["p99_ms"] / echo["p99_ms"]))
        if "unreported" in r:
            rows.append((f"front-end: {label}, accepted messages left without a final report",
                         f"{r['unreported']}", f"0: {'met' if not r['unreported'] else 'MISSED'}", None, None))
    return rows, ""
# ---- end of the front-end place -------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not reference figures")
    ap.add_argument("--runs", type=int, default=0, help="runs per figure, medians (default 3, quick 2)")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    ap.add_argument("--json", type=Path, help="also write the rows and raw figures here as JSON")
    ap.add_argument("--replay-dir", default="/tmp/smspolicy-replay-bench",
                    help="where the replay's logged decisions are generated once and reused")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of in-process config (b)")
    ap.add_argument("--workdir", type=Path, help="keep every file here (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in only if x not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}")
    if args.runs < 0:
        ap.error("--runs must be at least 1")
    quick = args.quick
    runs = args.runs or (2 if quick else 3)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="smspolicy-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load = LoadSampler()
    redis_proc = None
    began = time.perf_counter()
    say = (lambda *a: print(*a, flush=True))
    rows: list[tuple] = []
    raw: dict = {}
    failures: list[str] = []
    notes: list[str] = []

    def section(name: str, fn) -> None:
        """Runs one section; a failure is reported and the others still run."""
        if name not in only:
            return
        say(f"== {name}")
        try:
            fn()
        except engine_vs_zen.Disagreement as e:
            failures.append(f"{name}: {e}")
            say(str(e))
        except Exception as e:  # noqa: BLE001 - one broken section must not hide the others' figures
            failures.append(f"{name}: {type(e).__name__}: {e}")
            say(f"{name} failed: {type(e).__name__}: {e}")

    try:
        for line in machine():
            say(line)
        needs_workload = any(x in only for x in ("pipeline", "grpc", "engine"))
        if needs_workload:
            t = time.perf_counter()
            w = Workload(QUICK if quick else FULL)
            rules = w.write(workdir / "rules")
            n_in, n_grpc, n_engine = (1000, 1000, 1000) if quick else (20_000, 10_000, engine_vs_zen.SAMPLE)
            subs = list(w.messages(max(n_in, n_grpc, n_engine)))
            summary = ", ".join(f"{k} {v}" for k, v in w.summary().items())
            say(f"workload{' (QUICK sizes)' if quick else ''}: {summary}; written in {time.perf_counter() - t:.1f} s")

        def pipeline() -> None:
            recipients = sum(len(s.destinations) for s in subs[:n_in])
            say(f"in process: {n_in} messages ({recipients} recipients) per run")
            p = pipeline_bench.measure(rules, subs[:n_in], workdir / "inproc", reps=runs, log=say)
            say("daemon start:")
            start = pipeline_bench.daemon_start(rules, workdir / "start", reps=runs, log=say)
            rows.extend(pipeline_rows(p, start))
            raw["pipeline"] = _plain(p)
            raw["daemon start"] = start

        def grpc() -> None:
            nonlocal redis_proc
            redis_proc, url = grpc_bench.start_redis(workdir)
            if not url:
                say("no redis-server on PATH: the Redis rows are left out")
            say(f"gRPC: {n_grpc} messages per batch/stream run")
            g = grpc_bench.measure(rules, subs[:n_grpc], workdir / "grpc", 2 if quick else 10, reps=runs,
                                   unary_reps=1 if quick else runs, redis_url=url, log=say)
            notes.append(f"mean EvaluateResponse size {g['response_bytes']} bytes")
            rows.extend(grpc_rows(g))
            raw["grpc"] = {form: {k: [r.rate for r in v] for k, v in g[form].items()}
                           for form in ("batch", "stream", "unary-max") if form in g}
            raw["grpc"]["unary p99 ms"] = {k: [r.pct(99) for r in v] for k, v in g["unary"].items()}
            raw["grpc"]["memory"] = g["memory"]

        def engine() -> None:
            say(f"rules engines: {n_engine} messages' facts, {runs} runs")
            e = engine_vs_zen.measure(rules, subs[:n_engine], workdir / "zen", runs=runs, log=say)
            rows.extend(engine_rows(e))
            raw["engine"] = e
            notes.append("engine rows: both engines get the product's facts and the same preparation per call "
                         "(read_facts, textmatch for contains/matches on strings); zen: first-hit table over "
                         "enforced rules + collect table over shadow rules, one graph; engine against engine "
                         "without durable's match cache (zen has none), the product as shipped beside it, its "
                         "caches empty at the start of each run")

        def frontend() -> None:
            r, text = frontend_rows(quick, runs, say, raw)
            rows.extend(r)
            if text:
                notes.append("front-end end to end (bench/frontend_e2e.py, not yet in the table):\n" + text)

        def lists() -> None:
            sizes = lists_scale.QUICK_SIZES if quick else lists_scale.SIZES
            r = lists_scale.measure(workdir / "lists", sizes, 1000 if quick else lists_scale.MESSAGES, runs,
                                    starts=1 if quick else runs, quick=quick, log=say)
            rows.extend(lists_rows(r))
            raw["lists"] = r

        def replay() -> None:
            n = 10_000 if quick else 1_000_000
            r = replay_bench.measure(n, args.replay_dir, runs=runs, log=say)
            rows.extend(replay_rows(r))
            raw["replay"] = r
            if not r["ok"]:
                failures.append("replay: not every decision was reproduced")

        for name, fn in (("pipeline", pipeline), ("grpc", grpc), ("engine", engine), ("frontend", frontend),
                         ("lists", lists), ("replay", replay)):
            section(name, fn)

        say("")
        for note in notes:
            say(note)
        say(f"medians of {runs} runs{' (QUICK sizes: not reference figures)' if quick else ''}")
        if rows:
            say(table(rows))
        loadline = load.stop()
        say(loadline)
        if args.profile and "pipeline" in only:
            say(pipeline_bench.profile(rules, subs[: n_in // 4], workdir / "profile"))
        total = time.perf_counter() - began
        say(f"total {total:.0f} s")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "machine": machine(), "command": " ".join(["python -m bench", *(argv or sys.argv[1:])]),
                "quick": quick, "runs": runs, "load": loadline, "seconds": total, "failures": failures,
                "rows": [dict(zip(("metric", "value", "target", "baseline", "ratio"), r)) for r in rows],
                "raw": raw}, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
            say(f"JSON written to {args.json}")
        for f in failures:
            say(f"FAILED: {f}")
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
