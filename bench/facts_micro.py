"""Micro-benchmark of fact building (policy/facts), and of loading a million listed numbers.

    PYTHONPATH=. python bench/facts_micro.py            # everything
    PYTHONPATH=. python bench/facts_micro.py load       # list loading only: time and RSS
    PYTHONPATH=. python bench/facts_micro.py facts      # µs per message / per recipient

Each load measurement runs in a fresh interpreter so its RSS growth is its own.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_NUMBERS = 1_000_000
N_TEMPLATES = 500
N_KEYWORDS = 5_000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def make_numbers(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return [f"1{rnd.randint(3, 9)}{rnd.randrange(10**9):09d}" for _ in range(n)]


def numbers_file() -> Path:
    path = Path(tempfile.gettempdir()) / f"facts_micro_{N_NUMBERS}.txt"
    if not path.exists():
        path.write_text("# bench numbers\n" + "\n".join(make_numbers(N_NUMBERS)) + "\n")
    return path


def load_case(case: str, measure: str) -> None:
    """One measurement in this fresh process: 'time' (plain) or 'memory' (under tracemalloc,
    which counts exactly what the structure keeps; RSS would also count freed arenas)."""
    import tracemalloc

    from policy.facts.lists import ListIndex, Membership
    from policy.facts.numbers import iter_numbers, open_number_file
    from policy.rules.model import NumberList

    path = numbers_file()
    entries: frozenset[str] = frozenset()
    if case in ("entries", "str-shared"):
        with open_number_file(path) as f:
            entries = frozenset(iter_numbers(f, []))
    if measure == "memory":
        tracemalloc.start()
    t = time.perf_counter()
    if case == "file":  # entries come from an entry file: the index is all there is
        keep = ListIndex([NumberList("big", "numbers", "global", files=(path.name,))], path.parent)
        label = "ListIndex from a 1M-line entry file (int keys)"
    elif case == "entries":  # the loader handed a frozenset of 1M str in the PolicySet
        keep = ListIndex([NumberList("big", "numbers", "global", entries=entries)])
        label = "ListIndex from 1M str entries (int keys)"
    elif case == "str-shared":  # alternative: str keys, the very objects the PolicySet holds
        m = Membership(("big",), True, frozenset(), frozenset())
        keep = dict.fromkeys(entries, m)
        label = "str-key dict sharing the PolicySet's 1M str"
    elif case == "str-file":  # alternative: str keys read from a file (nothing to share)
        m = Membership(("big",), True, frozenset(), frozenset())
        with open_number_file(path) as f:
            keep = dict.fromkeys(iter_numbers(f, []), m)
        label = "str-key dict from a 1M-line file"
    else:
        raise SystemExit(f"unknown load case {case}")
    took = time.perf_counter() - t
    if measure == "memory":
        current, peak = tracemalloc.get_traced_memory()
        print(f"  {label}: kept {current / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB")
    else:
        print(f"  {label}: {took:.2f} s; process RSS {rss_mb():.0f} MB")
    del keep


def bench_load() -> None:
    numbers_file()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for measure in ("time", "memory"):
        print(f"loading {N_NUMBERS} numbers, {measure}:")
        for case in ("file", "entries", "str-shared", "str-file"):
            subprocess.run([sys.executable, __file__, "load-case", case, measure], check=True, env=env)


def bench_facts() -> None:
    from policy.facts.builder import FactBuilder
    from policy.facts.lists import ApiBlacklist
    from policy.facts.segments import SegmentDB
    from policy.rules.model import KeywordGroup, NumberList, Template
    from tests.facts.conftest import make_policy, submission

    rnd = random.Random(3)
    base = make_policy()
    lists = dict(base.lists)
    lists["big"] = NumberList("big", "numbers", "global", entries=frozenset(make_numbers(N_NUMBERS)))
    cjk = [chr(c) for c in range(0x4E00, 0x9FA5)]
    groups = {f"g{g}": KeywordGroup(f"g{g}", tuple("".join(rnd.choices(cjk, k=rnd.randint(2, 4)))
                                                   for _ in range(N_KEYWORDS // 50)))
              for g in range(50)}
    templates = {f"t{i}": Template(f"t{i}", "".join(rnd.choices(cjk, k=6)) + "{a}" +
                                   "".join(rnd.choices(cjk, k=8)) + "{b}" + "".join(rnd.choices(cjk, k=4)),
                                   account=None if i % 2 else "900001")
                 for i in range(N_TEMPLATES)}
    templates.update(base.templates)
    templates["t-bench"] = Template("t-bench", "您的验证码是{code}，{minutes}分钟内有效。请勿将验证码告知他人，"
                                               "如非本人操作请忽略本短信，客服电话{tel}。")
    policy = make_policy(lists=lists, keyword_groups=groups, templates=templates)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        fb = FactBuilder(policy, SegmentDB.load(), ApiBlacklist(Path(d) / "api.db"), None)
        print(f"FactBuilder build with {N_NUMBERS} numbers, {N_TEMPLATES} templates, "
              f"{N_KEYWORDS} keywords: {time.perf_counter() - t:.2f} s")
        account = policy.accounts["900001"]
        now = datetime(2024, 5, 1, 12, tzinfo=ZoneInfo("Asia/Shanghai"))
        head = "【云片科技】您的验证码是482913，5分钟内有效。请勿将验证码告知他人，如非本人操作请忽略本短信，客服电话"
        text = head + ("4008" * 5)[:69 - len(head)] + "。"
        sub = submission(text, destinations=["13912345678"])
        assert len(text) == 70
        mf = fb.message_facts(sub, account, now)
        assert mf["message__template_matched"]
        loops = 20000
        for label, fn in [
            ("message_facts (70 chars, 1 recipient)", lambda: fb.message_facts(sub, account, now)),
            ("recipient_facts (routed, unlisted)", lambda: fb.recipient_facts(mf, "13912345678", account)),
            ("recipient_facts (+86, listed)", lambda: fb.recipient_facts(mf, "+8613800138000", account)),
        ]:
            best = min(_timeit(fn, loops) for _ in range(5))
            print(f"{label}: {best:.2f} µs")


def _timeit(fn, loops: int) -> float:
    t = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - t) / loops * 1e6


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "load-case":
        load_case(sys.argv[2], sys.argv[3])
    else:
        if what in ("all", "load"):
            bench_load()
        if what in ("all", "facts"):
            bench_facts()
