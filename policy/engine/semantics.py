"""What a rule means, shared by both evaluators: which rules can run, and how facts are read.

Semantics (both evaluators, and tests/engine pin each point):

* A fact a stage does not have is simply absent. Every test of an absent fact is false — `ne`,
  `not_in`, `lt`, `contains`, `matches` alike — except `exists: false`, which is true. This is
  durable_rules' own rule (`$neq` on a missing property does not match), and the oracle agrees.
* `not` does not turn "absent" into true: `not: {fact: x, eq: 1}` is false when x is absent.
  Equivalently, a test of an absent fact is *unknown*, `not` of unknown is unknown, all/any use
  three-valued logic, and a rule fires only when its condition is true. (The durable compiler
  pushes `not` down to the tests, the oracle evaluates three-valued logic on the original tree;
  the two are the same function, which the property tests check.) Write
  `any: [{fact: x, exists: false}, {not: ...}]` to include the absent case.
* Types never mix: bool facts hold true/false and are compared with true/false, int facts with
  integers, str facts with strings. durable_rules would coerce (`86 == "86"`, `true == 1`), so
  rule values are checked against the vocabulary when rules are compiled and fact values on
  every match(); a wrong-typed fact raises FactTypeError.
* String facts are cut to 65,535 JSON bytes (text.py) in both evaluators.
* `contains` on a list fact is membership; on a str fact a substring test. `matches` is
  `re.search` with dialect.PATTERN_FLAGS, limited to what dialect.to_durable accepts.
* Size limits per rule, from durable_rules' fixed tables (the MAX_* constants below): more is
  refused when rules are compiled, by both evaluators alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..rules.conditions import All, Any_, Compare, Condition, Not
from ..rules.model import Rule
from ..vocabulary import FACTS, engine_key
from . import FactTypeError, RuleCompileError
from .dialect import DialectError, to_durable
from .text import cap

MAX_LIST_VALUES = 32        # values in one in/not_in (the loader's cap; a $or of 1,000 hangs durable)
MAX_TESTS_PER_RULE = 60     # durable evaluates at most 64 matching tests at once (error 303)
MAX_NODES_PER_RULE = 400    # and at most 511 tests under one node (hang)
MAX_GROUPS_PER_RULE = 15    # each all/any/list of values costs 2 of a rule's 32 expression slots (error 113)
MAX_INT = 2 ** 53           # integers are exact in durable's JSON parser and doubles up to here

_TYPES_OF_OP = {
    "eq": ("bool", "int", "str"), "ne": ("bool", "int", "str"),
    "lt": ("int",), "le": ("int",), "gt": ("int",), "ge": ("int",),
    "in": ("int", "str"), "not_in": ("int", "str"),
    "contains": ("str", "list"), "matches": ("str",), "exists": ("bool", "int", "str", "list"),
}
# negation of each test in negation normal form; text tests get internal not_* ops
NEGATED = {"eq": "ne", "ne": "eq", "lt": "ge", "ge": "lt", "le": "gt", "gt": "le", "in": "not_in",
           "not_in": "in", "contains": "not_contains", "not_contains": "contains",
           "matches": "not_matches", "not_matches": "matches"}


@dataclass(frozen=True)
class Test:
    """One fact test in negation normal form."""
    fact: str          # vocabulary name
    key: str           # engine_key(fact): the key in the facts dict
    type: str          # the fact's type: bool | int | str | list
    op: str            # an OPERATORS name, or not_contains / not_matches
    value: Any         # exists: bool; in/not_in: tuple; otherwise one value or pattern

    @property
    def is_text(self) -> bool:
        """A substring or pattern test on a str fact, which the durable evaluator runs in Python."""
        return self.type == "str" and self.op in ("contains", "not_contains", "matches", "not_matches")


@dataclass(frozen=True)
class Prepared:
    rule: Rule
    tree: object       # Test / All / Any_ in negation normal form
    tests: int         # leaf tests (each in/not_in counts once)
    nodes: int         # engine tests (each value of in/not_in counts)
    groups: int        # all/any of several conditions and in/not_in of several values


def prepare_rules(rules: Sequence[Rule]) -> list[Prepared]:
    """Every rule checked and normalized, or RuleCompileError listing every problem found."""
    problems: list[str] = []
    out: list[Prepared] = []
    ids: set[str] = set()
    for rule in rules:
        tree, own = _compile(rule.when)
        if rule.id in ids:
            own.append("rule id used twice in one stage")
        ids.add(rule.id)
        if type(rule.priority) is not int or not 0 <= rule.priority <= 65535:
            own.append(f"priority {rule.priority!r} is outside 0..65535")
        if own:
            where = f"{rule.where}: " if rule.where else ""
            problems += [f"{where}rule '{rule.id}': {p}" for p in own]
        else:
            out.append(Prepared(rule, tree, *_size(tree)[:2], _groups(tree)))
    if problems:
        raise RuleCompileError(problems)
    return out


def condition_problems(cond: Condition) -> list[str]:
    """What keeps one condition from running in the engine (the checks of prepare_rules), for a
    caller that reports problems next to the YAML, such as the loader."""
    return _compile(cond)[1]


def _compile(cond: Condition) -> tuple[object, list[str]]:
    problems: list[str] = []
    tree = _nnf(cond, False, problems)
    if not problems:
        tests, nodes = _size(tree)
        groups = _groups(tree)
        if tests > MAX_TESTS_PER_RULE:
            problems.append(f"the condition has {tests} fact tests; the rules engine evaluates at most "
                            f"{MAX_TESTS_PER_RULE} per rule — split the rule")
        if nodes > MAX_NODES_PER_RULE:
            problems.append(f"the condition compares with {nodes} values; the rules engine takes at most "
                            f"{MAX_NODES_PER_RULE} per rule — use a number list or keyword group instead")
        if groups > MAX_GROUPS_PER_RULE:
            problems.append(f"the condition has {groups} groups (all/any of several conditions, in/not_in of "
                            f"several values, one for exists: false); the rules engine takes at most "
                            f"{MAX_GROUPS_PER_RULE} per rule — split the rule")
    return tree, problems


def _nnf(cond: Condition, negate: bool, problems: list[str]):
    if isinstance(cond, Not):
        return _nnf(cond.item, not negate, problems)
    if isinstance(cond, (All, Any_)):
        if not cond.items:
            problems.append(f"an empty {'all' if isinstance(cond, All) else 'any'}")
            return None
        items = tuple(_nnf(c, negate, problems) for c in cond.items)
        conj = isinstance(cond, All) != negate
        return All(items) if conj else Any_(items)
    if isinstance(cond, Compare):
        test = _test(cond, problems)
        if test is None or not negate:
            return test
        if test.op == "exists":
            return Test(test.fact, test.key, test.type, "exists", not test.value)
        return Test(test.fact, test.key, test.type, NEGATED[test.op], test.value)
    problems.append(f"unknown condition node {cond!r}")
    return None


def _test(cmp: Compare, problems: list[str]) -> Test | None:
    fact = FACTS.get(cmp.fact)
    if fact is None:
        problems.append(f"unknown fact '{cmp.fact}'")
        return None
    allowed = _TYPES_OF_OP.get(cmp.op)
    if allowed is None:
        problems.append(f"unknown operator '{cmp.op}'")
        return None
    if fact.type not in allowed:
        problems.append(f"operator '{cmp.op}' does not apply to {cmp.fact}, a {fact.type} fact")
        return None
    value = cmp.value
    if cmp.op == "exists":
        ok = isinstance(value, bool)
        expected = "true or false"
    elif cmp.op in ("in", "not_in"):
        if not isinstance(value, (tuple, list)) or not value:
            problems.append(f"'{cmp.op}' on {cmp.fact} needs a non-empty list of values")
            return None
        if len(value) > MAX_LIST_VALUES:
            problems.append(f"'{cmp.op}' on {cmp.fact} has {len(value)} values; at most {MAX_LIST_VALUES} — "
                            "use a number list or keyword group for longer lists")
            return None
        bad = [v for v in value if not _of_type(v, fact.type)]
        if bad:
            problems.append(_out_of_range(cmp, bad[0]) or f"{cmp.fact} is a {fact.type} fact; '{cmp.op}' has {bad[0]!r}")
            return None
        return Test(cmp.fact, engine_key(cmp.fact), fact.type, cmp.op, tuple(dict.fromkeys(value)))
    elif cmp.op == "matches":
        if not isinstance(value, str) or not value:
            problems.append(f"'matches' on {cmp.fact} needs a non-empty regular expression")
            return None
        try:
            to_durable(value)
        except DialectError as e:
            problems.append(f"the regular expression {value!r} cannot run: {e}")
            return None
        return Test(cmp.fact, engine_key(cmp.fact), fact.type, "matches", value)
    elif cmp.op == "contains":
        ok = isinstance(value, str) and value != ""
        expected = "a non-empty string"
    else:
        ok = _of_type(value, fact.type)
        expected = {"bool": "true or false", "int": "an integer", "str": "a string"}[fact.type]
    if not ok:
        problems.append(_out_of_range(cmp, value) or f"'{cmp.op}' on {cmp.fact} needs {expected}, got {value!r}")
        return None
    return Test(cmp.fact, engine_key(cmp.fact), fact.type, cmp.op, value)


def _out_of_range(cmp: Compare, value) -> str | None:
    """The problem of an integer the engine cannot compare exactly (its JSON numbers are doubles)."""
    if type(value) is int and not -MAX_INT <= value <= MAX_INT:
        return (f"'{cmp.op}' on {cmp.fact}: {value} is outside the integers the rules engine compares "
                f"exactly (-{MAX_INT} to {MAX_INT}, ±2^53)")
    return None


def _of_type(value, type_: str) -> bool:
    if type_ == "bool":
        return isinstance(value, bool)
    if type_ == "int":
        return type(value) is int and -MAX_INT <= value <= MAX_INT
    return isinstance(value, str)


def _groups(tree) -> int:
    """The $and/$or the durable compiler emits, counting the guard a rule with `exists: false` gets."""
    def walk(t) -> tuple[int, bool]:
        if isinstance(t, Test):
            several = t.op in ("in", "not_in") and len(t.value) > 1
            return int(several), t.op == "exists" and t.value is False
        parts = [walk(i) for i in t.items]
        return int(len(parts) > 1) + sum(p[0] for p in parts), any(p[1] for p in parts)
    groups, absent = walk(tree)
    return groups + absent


def _size(tree) -> tuple[int, int]:
    if isinstance(tree, Test):
        return 1, (len(tree.value) if tree.op in ("in", "not_in") else 1)
    sizes = [_size(t) for t in tree.items]
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes)


def facts_read(prepared: Sequence[Prepared]) -> list[tuple[str, str, str]]:
    """(key, type, name) of every fact the rules test, in a stable order."""
    seen: dict[str, tuple[str, str, str]] = {}

    def walk(tree) -> None:
        if isinstance(tree, Test):
            seen.setdefault(tree.key, (tree.key, tree.type, tree.fact))
        else:
            for t in tree.items:
                walk(t)

    for p in prepared:
        walk(p.tree)
    return list(seen.values())


def read_facts(facts: dict, used: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
    """The values of the used facts that are present, type-checked and normalized for both evaluators."""
    out: dict[str, Any] = {}
    get = facts.get
    for key, type_, name in used:
        v = get(key, _ABSENT)
        if v is _ABSENT:
            continue
        t = type(v)
        if type_ == "str" and t is str:
            out[key] = cap(v)
        elif type_ == "bool" and t is bool:
            out[key] = v
        elif type_ == "int" and t is int and -MAX_INT <= v <= MAX_INT:
            out[key] = v
        elif type_ == "list" and (t is list or t is tuple) and all(type(x) is str for x in v):
            out[key] = tuple(cap(x) for x in v)
        else:
            raise FactTypeError(f"fact {name} ({key}) must be a {type_}, got {v!r:.80}")
    return out


_ABSENT = object()
