"""Compile a rule set in a child process before the daemon does, because durable_rules can crash
(SIGSEGV, abort) or hang with the GIL held instead of raising, and nothing in-process survives that.

The child (`python -m policy.engine.validate <rules dir>`, or `--stdin` with a pickled rule list)
loads the policy, builds DurableRules for every stage, evaluates sample facts for every rule with
both evaluators, and prints its problems as a JSON list (exit 0 without problems, 1 with).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from ..rules.conditions import All, Any_, Compare, Not
from ..rules.model import Rule
from ..vocabulary import FACTS, engine_key
from . import EngineError, RuleCompileError
from .durable_engine import DurableRules
from .oracle import OracleRules

_ROOT = Path(__file__).resolve().parents[2]


def validate_rules_in_subprocess(rules_dir: str, timeout: float = 20.0) -> list[str]:
    """[] when the rules folder loads and compiles, else one line per problem."""
    return _run_child([os.path.abspath(rules_dir)], None, timeout)


def validate_rule_list_in_subprocess(rules: Sequence[Rule], timeout: float = 20.0, **shards: int) -> list[str]:
    """The same check for rules built in memory (tests, tools); `shards` are DurableRules' shard_size,
    shard_tests and shard_nodes."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in shards.items()]
    return _run_child(["--stdin", *flags], pickle.dumps(list(rules)), timeout)


def _run_child(args: list[str], data: bytes | None, timeout: float) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "policy.engine.validate", *args], env=env,
                            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return [f"rules engine hung for more than {timeout:g}s while compiling"]
    if proc.returncode < 0:
        return [f"rules engine crashed (signal {-proc.returncode}) while compiling"]
    if proc.returncode in (0, 1):
        try:
            problems = json.loads(out.decode("utf-8"))
        except ValueError:
            problems = None
        if isinstance(problems, list) and (proc.returncode == 1) == bool(problems):
            return [str(p) for p in problems]
    tail = err.decode("utf-8", "replace").strip().splitlines()[-5:]
    return [f"rules validator failed (exit {proc.returncode}): " + " | ".join(tail)]


# -- the child ---------------------------------------------------------------------------------

def check_rules(rules: Sequence[Rule], **shards: int) -> list[str]:
    """Compile every stage and evaluate sample facts; the problems found."""
    problems: list[str] = []
    for stage in sorted({r.stage for r in rules}):
        stage_rules = [r for r in rules if r.stage == stage]
        try:
            durable = DurableRules(stage_rules, f"validate-{stage}", **shards)
            oracle = OracleRules(stage_rules, f"validate-{stage}")
        except RuleCompileError as e:
            problems += e.problems
            continue
        try:
            for rule in stage_rules:
                for facts in sample_facts(rule):
                    try:
                        got = [r.id for r in durable.match(facts)]
                    except EngineError as e:
                        problems.append(f"rule '{rule.id}': the rules engine failed on sample facts: {e}")
                        break
                    want = [r.id for r in oracle.match(facts)]
                    if got != want:
                        problems.append(f"rule '{rule.id}': the rules engine matched {got} where the rules "
                                        f"mean {want}, for facts {facts}")
                        break
        finally:
            durable.close()
    return problems


def sample_facts(rule: Rule) -> list[dict]:
    """Facts to evaluate a rule on: every fact of its stage at its vocabulary example, then the
    values the rule itself tests for, then nothing at all."""
    stages = ("message",) if rule.stage == "submit" else ("message", "recipient")
    base = {engine_key(f.name): f.example for f in FACTS.values() if f.stage in stages}
    hinted = dict(base)
    _hint(rule.when, hinted)
    return [base, hinted, {}]


def _hint(cond, facts: dict) -> None:
    if isinstance(cond, Not):
        _hint(cond.item, facts)
    elif isinstance(cond, (All, Any_)):
        for c in cond.items:
            _hint(c, facts)
    elif isinstance(cond, Compare) and cond.fact in FACTS:
        key, fact, v = engine_key(cond.fact), FACTS[cond.fact], cond.value
        if cond.op == "exists":
            if v is False:
                facts.pop(key, None)
        elif cond.op in ("eq", "ne", "le", "ge"):
            facts[key] = v
        elif cond.op == "lt" and type(v) is int:
            facts[key] = v - 1
        elif cond.op == "gt" and type(v) is int:
            facts[key] = v + 1
        elif cond.op in ("in", "not_in") and v:
            facts[key] = v[0]
        elif cond.op == "contains":
            facts[key] = [v] if fact.type == "list" else f"x{v}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy.engine.validate")
    parser.add_argument("rules_dir", nargs="?")
    parser.add_argument("--stdin", action="store_true", help="read a pickled list of Rule from stdin")
    for flag in ("--shard-size", "--shard-tests", "--shard-nodes"):
        parser.add_argument(flag, type=int, help="DurableRules' parameter of that name")
    args = parser.parse_args(argv)
    shards = {k: v for k in ("shard_size", "shard_tests", "shard_nodes") if (v := getattr(args, k)) is not None}
    if args.stdin:
        rules = pickle.load(sys.stdin.buffer)
        problems = check_rules(rules, **shards)
    else:
        from ..rules.errors import PolicyError
        from ..rules.loader import load_policy
        try:
            policy = load_policy(args.rules_dir)
        except PolicyError as e:
            problems = [str(p) for p in e.problems]
        else:
            problems = check_rules(policy.rules, **shards)
    sys.stdout.buffer.write(json.dumps(problems, ensure_ascii=False).encode("utf-8"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
