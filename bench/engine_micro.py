"""Matches per second of the rule evaluators on one core: python bench/engine_micro.py [--seconds S]

A mix of 40 (or --rules N) rules like the shipped ones: boolean list flags, integer limits,
account lists, keyword groups, substring and regex tests on short SMS content, some any/not.
Every variant evaluates the same facts; the script checks they agree before timing.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policy.engine.durable_engine import DurableRules  # noqa: E402
from policy.engine.oracle import OracleRules  # noqa: E402
from policy.rules.conditions import All, Any_, Compare, Not  # noqa: E402
from policy.rules.model import Rule  # noqa: E402
from policy.vocabulary import FACTS, engine_key  # noqa: E402

FLAGS = [n for n, f in FACTS.items() if f.type == "bool"]
KEYWORDS = ["loan", "gambling", "finance", "adult", "politics"]


def make_rules(n: int, rng: random.Random) -> list[Rule]:
    makers = [
        lambda: Compare(rng.choice(FLAGS), "eq", True),
        lambda: Compare("message.length", "gt", rng.randint(60, 900)),
        lambda: Compare("account.id", "in", tuple(f"9{rng.randint(0, 99999):05d}" for _ in range(rng.randint(1, 8)))),
        lambda: Compare("message.keyword_groups", "contains", rng.choice(KEYWORDS)),
        lambda: Compare("message.content", "contains", rng.choice(["贷款", "博彩", "退订", "发票", "加微信"])),
        lambda: Compare("message.content", "matches", rng.choice([r"\d{6}", r"https?://", r"^【.{2,8}】", r"回T|退订"])),
        lambda: Compare("message.src_id", "matches", r"^1069\d+$"),
        lambda: All((Compare(rng.choice(FLAGS), "eq", True), Compare("message.hour", "lt", rng.randint(6, 9)))),
        lambda: Any_((Compare("recipient.carrier", "eq", "cmcc"), Compare("recipient.province", "eq", "北京"))),
        lambda: Not(Compare("message.content", "contains", "退订")),
    ]
    return [Rule(id=f"r{i}", stage="recipient", action="reject", code="MA:0001", priority=rng.randint(1, 100),
                 mode="enforce", description="", when=makers[i % len(makers)](), index=i) for i in range(n)]


def make_facts(rng: random.Random) -> list[dict]:
    out = []
    for k in range(200):
        f = {engine_key(n): fact.example for n, fact in FACTS.items()}
        f[engine_key("message.content")] = rng.choice(
            ["【云片科技】您的验证码是1234，5分钟内有效。", "【某银行】低息贷款，回T退订", "周末大促 http://x.cn 回T退订",
             "【物流】您的快递已到，取件码 887766", "hello from the bench"])
        f[engine_key("message.length")] = rng.randint(10, 200)
        f[engine_key("message.keyword_groups")] = rng.sample(KEYWORDS, rng.randint(0, 2))
        f[engine_key("account.id")] = f"9{rng.randint(0, 99999):05d}"
        f[engine_key("message.src_id")] = rng.choice(["10690001", "95555", "1065123"])
        f[engine_key("recipient.carrier")] = rng.choice(["cmcc", "cucc", "ctcc", "cbn"])
        f[engine_key("recipient.province")] = rng.choice(["北京", "广东", "上海", "四川", "江苏"])
        for flag in FLAGS:
            f[engine_key(flag)] = rng.random() < 0.1
        out.append(f)
    return out


def rate(engine, facts: list[dict], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for f in facts:
            engine.match(f)
        n += len(facts)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    rng = random.Random(7)
    rules, facts = make_rules(args.rules, rng), make_facts(rng)
    variants = {
        f"DurableRules, 1 shard of {args.rules}": DurableRules(rules, "one", shard_size=args.rules,
                                                                shard_tests=10**6, shard_nodes=10**6),
        "DurableRules, default shards (<=48 rules, <=60 tests)": DurableRules(rules, "default"),
        "DurableRules, shards of 8 rules": DurableRules(rules, "eight", shard_size=8),
        "OracleRules (plain Python)": OracleRules(rules, "oracle"),
    }
    reference = [[r.id for r in variants["OracleRules (plain Python)"].match(f)] for f in facts]
    hits = sum(len(r) for r in reference) / len(reference)
    print(f"{args.rules} rules, {len(facts)} fact dicts of {len(facts[0])} facts, {hits:.1f} matches per message")
    for name, engine in variants.items():
        assert [[r.id for r in engine.match(f)] for f in facts] == reference, name
        shards = f" [{engine.shard_count} shards]" if isinstance(engine, DurableRules) else ""
        print(f"  {name:<55}{shards:<12} {rate(engine, facts, args.seconds):>9,.0f} matches/s")


if __name__ == "__main__":
    main()
