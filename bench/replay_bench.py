"""Replay benchmark: how long `smspolicy replay` takes over a big decision log.

    python bench/replay_bench.py                       # 1,000,000 decisions (generated once, then reused)
    python bench/replay_bench.py --decisions 100000 --dir /tmp/rb-small

Generation runs the daemon's real pipeline (rules/, fact builder, durable_rules, SQLite counters,
DecisionLog) in two processes, as two daemons would: each writes its own decision log, both store
their rules versions in one version store. The traffic is a plausible mix: mostly one recipient,
some group sends; verification codes, notifications, marketing, a little illegal, loan and
placeholder content; random numbers of real segments plus a few hot, blacklisted and malformed
ones; about 5 days. A third of the way through the rules change (the shadow loan rule is
enforced), and again two thirds through (the demo account's per-number limit drops to 10), so
the exact replay needs three rules versions.

Then it times, as a user would run them:
  smspolicy replay LOGS --versions versions.db                 (exact; must reproduce 100%)
  smspolicy replay LOGS --rules CANDIDATE --csv diff.csv       (what-if)
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

START = datetime.fromisoformat("2026-11-20T08:00:00+08:00").timestamp()
DAYS = 5
GENERATORS = 2

# (account, src id, weight, signature it uses)
ACCOUNTS = [
    ("900001", "106900001", 40, "【云信科技】"),
    ("900011", "106900011", 15, "【云信科技】"),
    ("900007", "106900007", 10, "【云信科技】"),
    ("900016", "106900016", 8, ""),
    ("900010", "106900010", 8, "【云信科技】"),
    ("900014", "106900014", 6, "【云信科技】"),
    ("900015", "106900015", 6, "【云信科技】"),
    ("900008", "106900008", 5, "【云信科技】"),
    ("900002", "106900002", 2, "【云信科技】"),
]
PREFIXES = ["138", "139", "135", "136", "137", "150", "151", "152", "158", "159", "182", "183", "187",
            "188", "130", "131", "132", "155", "156", "185", "186", "133", "153", "180", "181", "189",
            "177", "199", "192", "134"]
HOT = [f"1380013{n:04d}" for n in range(10)]
SPECIAL = ["13900000001", "13900000005", "13700000001", "13600000001", "13500001234", "13400001234",
           "13800000404", "19999999999", "12345678901"]


def _content(rnd: random.Random, signature: str) -> str:
    roll = rnd.random()
    if roll < 0.50:
        body = f"您的验证码是{rnd.randint(100000, 999999)}，{rnd.choice((3, 5, 10))}分钟内有效"
    elif roll < 0.75:
        body = (f"您的订单{rnd.randint(10**9, 10**10)}已发货，快递单号SF{rnd.randint(10**11, 10**12)}，"
                "请注意查收")
    elif roll < 0.88:
        body = f"双十一大促，全场{rnd.randint(3, 9)}折起，详询客服。回T退订"
    elif roll < 0.91:
        body = f"贷款秒批，无抵押贷款，额度{rnd.randint(1, 50)}万，当天到账"
    elif roll < 0.93:
        body = f"网上赌场首充送{rnd.randint(10, 999)}元"
    elif roll < 0.94:
        body = "您的验证码是{code}，5分钟内有效"
    elif roll < 0.97:
        body = "尊敬的客户，" + "本次活动详情请见官网公告，" * rnd.randint(3, 8) + "感谢支持"
    else:
        return f"您的验证码是{rnd.randint(1000, 9999)}"          # no signature
    return signature + body


def _number(rnd: random.Random) -> str:
    roll = rnd.random()
    if roll < 0.05:
        return rnd.choice(HOT)
    if roll < 0.07:
        return rnd.choice(SPECIAL)
    if roll < 0.075:
        return f"138{rnd.randint(10**6, 10**7 - 1)}"            # 10 digits: MA:0021
    return rnd.choice(PREFIXES) + f"{rnd.randint(0, 10**8 - 1):08d}"


def _generate(index: int, total: int, out: str) -> None:
    from policy.audit import DecisionLog, VersionStore
    from policy.counters import SqliteCounterStore
    from policy.daemon.pipeline import Pipeline
    from policy.daemon.runtime import Runtime
    from policy.rules.loader import policy_files
    from policy.submission import Submission

    rules = os.path.join(out, f"rules-g{index}")
    shutil.copytree(REPO / "rules", rules)
    versions = VersionStore(os.path.join(out, "versions.db"))
    data = os.path.join(out, f"data-g{index}")
    os.makedirs(data, exist_ok=True)
    runtime = Runtime(rules, data, on_loaded=lambda lp: versions.put(lp.version, policy_files(rules)))
    store = SqliteCounterStore(os.path.join(data, "counters.db"))
    for account in runtime.current().policy.accounts.values():
        if account.billing == "prepaid":
            store.set_opening_balance(account.id, account.balance)
    log = DecisionLog(os.path.join(out, f"decisions-g{index}.db"), queue_max=50_000)
    pipeline = Pipeline(runtime, store, log)
    rnd = random.Random(1000 + index)
    weights = [a[2] for a in ACCOUNTS]
    step = DAYS * 86400 / total
    mine = range(index, total, GENERATORS)
    changes = {total // 3: _enforce_loans, 2 * total // 3: _tighten_demo_limit}
    for i in mine:
        for at, change in list(changes.items()):
            if i >= at:
                change(rules)
                outcome = runtime.reload()
                assert outcome.ok, outcome.errors
                del changes[at]
        account, src, _, signature = rnd.choices(ACCOUNTS, weights)[0]
        roll = rnd.random()
        count = 1 if roll < 0.85 else rnd.randint(2, 5) if roll < 0.97 else rnd.randint(10, 30)
        sub = Submission(request_id=f"g{index}-{i}", account_id=account, frontend_id=f"fe{index}",
                         src_id=src + (f"{rnd.randint(10, 99)}" if rnd.random() < 0.2 else ""),
                         destinations=[_number(rnd) for _ in range(count)],
                         content=_content(rnd, signature).encode("utf-16-be"),
                         fee_code="000010" if account == "900002" else "")
        pipeline.evaluate(sub, now=START + i * step)
    log.close()
    store.close()
    runtime.close()


def _enforce_loans(rules: str) -> None:
    path = os.path.join(rules, "policy.yaml")
    text = Path(path).read_text(encoding="utf-8")
    Path(path).write_text(text.replace("    mode: shadow\n", "    mode: enforce\n"), encoding="utf-8")


def _tighten_demo_limit(rules: str) -> None:
    path = os.path.join(rules, "limits.yaml")
    text = Path(path).read_text(encoding="utf-8")
    Path(path).write_text(text.replace("    max: 20\n", "    max: 10\n", 1), encoding="utf-8")


def generate(out: str, total: int) -> float:
    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_generate, args=(i, total, out)) for i in range(GENERATORS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"generator failed with exit code {p.exitcode}")
    Path(out, "COMPLETE").write_text(str(total))
    return time.perf_counter() - started


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout


def measure(decisions: int, root: str = "/tmp/smspolicy-replay-bench", runs: int = 1, workers: int | None = None,
            log=print) -> dict:
    """Exact replay of `decisions` logged decisions `runs` times (the logs generated once, then
    reused from `root`): wall seconds of each run, decisions/s (median), and whether every
    decision was reproduced in every run."""
    import re
    import statistics
    out = os.path.join(root, str(decisions))
    if not Path(out, "COMPLETE").exists():
        shutil.rmtree(out, ignore_errors=True)
        log(f"  generating {decisions:,} logged decisions in {out} (once; later runs reuse them) ...")
        seconds = generate(out, decisions)
        log(f"  generated in {seconds:.0f} s")
    logs = sorted(str(p) for p in Path(out).glob("decisions-g*.db"))
    cmd = [sys.executable, "-m", "policy", "replay", *logs, "--no-progress",
           "--versions", os.path.join(out, "versions.db")]
    if workers:
        cmd += ["--workers", str(workers)]
    walls, reproduced, ok = [], "", True
    for rep in range(runs):
        seconds, report = timed(cmd)
        walls.append(seconds)
        m = re.search(r"reproduced: ([\d,]+ of [\d,]+ \([\d.]+%\))", report)
        reproduced = m.group(1) if m else "?"
        ok = ok and "OK: every decision reproduced exactly" in report
        log(f"  exact replay run {rep + 1}: {seconds:.1f} s wall ({decisions / seconds:,.0f} decisions/s), "
            f"reproduced {reproduced}")
    return {"decisions": decisions, "walls": walls, "seconds": statistics.median(walls),
            "rate": statistics.median(decisions / w for w in walls), "reproduced": reproduced, "ok": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/smspolicy-replay-bench")
    ap.add_argument("--regenerate", action="store_true", help="generate the logs again")
    ap.add_argument("--workers", type=int, help="passed to smspolicy replay (default: its own choice)")
    ap.add_argument("--skip-what-if", action="store_true")
    args = ap.parse_args()

    out = os.path.join(args.dir, str(args.decisions))
    done = Path(out, "COMPLETE")
    if args.regenerate or not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        print(f"generating {args.decisions:,} decisions in {out} ...", flush=True)
        seconds = generate(out, args.decisions)
        print(f"generated in {seconds:.0f} s ({args.decisions / seconds:,.0f} decisions/s through the pipeline)")
    logs = sorted(str(p) for p in Path(out).glob("decisions-g*.db"))
    size = sum(os.path.getsize(p) for p in logs)
    print(f"logs: {len(logs)} files, {size / 2**20:,.0f} MiB")

    smspolicy = [sys.executable, "-m", "policy", "replay", *logs, "--no-progress"]
    if args.workers:
        smspolicy += ["--workers", str(args.workers)]
    seconds, report = timed([*smspolicy, "--versions", os.path.join(out, "versions.db")])
    print(f"\n== exact replay: {seconds:.1f} s wall ({args.decisions / seconds:,.0f} decisions/s)\n{report}")

    if not args.skip_what_if:
        candidate = os.path.join(out, "candidate")
        shutil.rmtree(candidate, ignore_errors=True)
        shutil.copytree(REPO / "rules", candidate)
        _enforce_loans(candidate)
        _tighten_demo_limit(candidate)
        seconds, report = timed([*smspolicy, "--rules", candidate, "--csv", os.path.join(out, "diff.csv")])
        print(f"== what-if replay: {seconds:.1f} s wall ({args.decisions / seconds:,.0f} decisions/s)\n{report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
