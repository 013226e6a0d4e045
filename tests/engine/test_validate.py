"""Validation in a child process: clean rules, problems, and the engine crashing or hanging for real."""
from pathlib import Path

from policy.engine.validate import sample_facts, validate_rule_list_in_subprocess, validate_rules_in_subprocess
from policy.rules.conditions import All, Compare, Not
from tests.engine.rulekit import rule

ROOT = Path(__file__).resolve().parents[2]
UNBOUNDED = {"shard_size": 10_000, "shard_tests": 10**6, "shard_nodes": 10**6}


def test_the_shipped_rules_validate():
    assert validate_rules_in_subprocess(str(ROOT / "rules")) == []


def test_a_broken_folder_reports_the_loaders_problems(tmp_path):
    (tmp_path / "policy.yaml").write_text("rules: [ {id: x\n")
    problems = validate_rules_in_subprocess(str(tmp_path))
    assert problems and "policy.yaml" in problems[0]


def test_rules_the_engine_cannot_run_are_reported_by_id():
    rules = [rule(0, Compare("message.length", "gt", 1)),
             rule(1, Compare("account.id", "in", tuple(f"v{i}" for i in range(40))))]
    problems = validate_rule_list_in_subprocess(rules)
    assert len(problems) == 1 and "rule 'r1'" in problems[0] and "at most 32" in problems[0]


class CrashOnLoad:
    """Unpickles as a call to faulthandler._sigsegv(): a real SIGSEGV in the child, every time."""

    def __reduce__(self):
        import faulthandler
        return faulthandler._sigsegv, ()


def test_a_crashing_child_is_reported_not_suffered():
    # The engine's own crashes are off-by-one heap overflows whose effect depends on the heap
    # layout (256 rules sharing one test crash in some environments, corrupt results in others),
    # and the default shards keep rule sets away from them; a deliberate segfault checks the
    # reporting itself.
    rules = [rule(0, Compare("message.length", "gt", 1)), CrashOnLoad()]
    assert validate_rule_list_in_subprocess(rules) == ["rules engine crashed (signal 11) while compiling"]


def test_a_hang_in_the_engine_is_cut_short():
    # 513+ different tests under one node: create_ruleset loops forever holding the GIL
    rules = [rule(i, Compare("account.id", "eq", f"v{i}")) for i in range(600)]
    assert validate_rule_list_in_subprocess(rules, timeout=2, **UNBOUNDED) == [
        "rules engine hung for more than 2s while compiling"]


def test_the_same_rules_in_default_shards_are_fine():
    rules = [rule(i, Compare("account.id", "eq", f"v{i}")) for i in range(600)]
    rules += [rule(600 + i, Compare("recipient.blacklisted.global", "eq", True)) for i in range(256)]
    assert validate_rule_list_in_subprocess(rules) == []


def test_sample_facts_exercise_the_rule():
    r = rule(0, All((Compare("message.length", "gt", 500), Not(Compare("recipient.number", "exists", True)),
                     Compare("message.keyword_groups", "contains", "loan"))))
    base, hinted, empty = sample_facts(r)
    assert base["message__length"] == 24 and "recipient__number" in base
    assert hinted["message__length"] == 501 and hinted["message__keyword_groups"] == ["loan"]
    assert "recipient__number" in hinted   # hints set the values a rule names; they ignore `not`
    assert empty == {}
