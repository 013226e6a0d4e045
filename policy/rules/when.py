"""A rule's `when`, read into the condition tree of conditions.py and checked against the fact
vocabulary: known facts only, operators that fit the fact's type, values of the fact's type
(and of its enum), facts that exist at the rule's stage, regexes the rules engine can run."""
from __future__ import annotations

import re

from ..engine.semantics import MAX_INT, MAX_LIST_VALUES, MAX_TESTS_PER_RULE, condition_problems
from ..vocabulary import ENUMS, FACTS, Fact
from .conditions import OPERATORS, All, Any_, Compare, Condition, Not
from .entries import normalize_number
from .fields import Invalid, Reader, Reported, mapping, scalar, suggest, text
from .yamlmarks import Node, SequenceNode, describe

MAX_DEPTH = 32
# Conditions (all / any / not and fact tests) read per rule, each YAML alias counted every time it
# is used: a rule the rules engine can run has at most 60 fact tests (semantics.MAX_TESTS_PER_RULE),
# so this only stops trees that could never compile, such as a few hundred bytes of nested aliases
# that would otherwise expand to millions of conditions.
MAX_CONDITIONS = 1000

OPERATORS_BY_TYPE = {
    "bool": ("eq", "ne", "exists"),
    "int": ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "exists"),
    "str": ("eq", "ne", "in", "not_in", "contains", "matches", "exists"),
    "list": ("contains", "exists"),
}

# Facts whose values are ids of the policy's own objects: a value naming no such object is a
# dangling reference, caught at load time rather than silently never matching.
REFERENCE_FACTS = {
    "message.keyword_groups": ("keyword_groups", "keyword group"),
    "recipient.lists": ("lists", "list"),
    "route.channel": ("channels", "channel"),
    "account.id": ("accounts", "account"),
    "message.template_id": ("templates", "template"),
}

_LOGIC = ("all", "any", "not")
_KEYS = (*_LOGIC, "fact", *OPERATORS)


def read_when(node: Node, r: Reader, path: str, stage: str | None) -> Condition:
    """The condition, or Reported after recording every problem in it.

    `stage` None means the rule's stage was itself invalid: stage checks are skipped.
    """
    budget = _Budget()
    try:
        cond = _node(node, r, path, stage, 0, budget)
    except _TooLarge:
        r.problem(node, path, f"the condition has more than {MAX_CONDITIONS} conditions (all / any / not and "
                              "fact tests, each use of a YAML alias counted again); the rules engine "
                              f"evaluates at most {MAX_TESTS_PER_RULE} fact tests per rule — split the rule")
        raise Reported from None
    if cond is None:
        raise Reported
    # what the rules engine itself cannot run (sizes, integers beyond its exact range), checked as
    # the daemon's compiler checks it, so that `check` refuses everything `serve` would
    engine_problems = condition_problems(cond)
    for message in engine_problems:
        r.problem(node, path, message)
    if engine_problems:
        raise Reported
    return cond


class _TooLarge(Exception):
    pass


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_CONDITIONS

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _TooLarge


def _node(node: Node, r: Reader, path: str, stage: str | None, depth: int, budget: _Budget) -> Condition | None:
    budget.take()
    items = mapping(node, r, path, "a condition (a mapping)")
    if items is None:
        return None
    if depth > MAX_DEPTH:
        r.problem(node, path, f"conditions are nested more than {MAX_DEPTH} levels deep")
        return None
    unknown = [k for k in items if k not in _KEYS]
    for key in unknown:
        r.problem(items[key][0], f"{path}.{key}", f"unknown key '{key}' in a condition" + suggest(key, _KEYS))
    if unknown:
        return None
    logic = [k for k in _LOGIC if k in items]
    if logic:
        if len(items) > 1:
            r.problem(node, path, "a condition is one of all / any / not, or one fact test; "
                                  f"this one has {', '.join(items)}")
            return None
        return _logic(logic[0], items[logic[0]][1], r, path, stage, depth, budget)
    return _test(node, items, r, path, stage)


def _logic(key: str, value: Node, r: Reader, path: str, stage: str | None, depth: int,
           budget: _Budget) -> Condition | None:
    sub = f"{path}.{key}"
    if key == "not":
        inner = _node(value, r, sub, stage, depth + 1, budget)
        return None if inner is None else Not(inner)
    if not isinstance(value, SequenceNode):
        r.problem(value, sub, f"'{key}' takes a list of conditions, got {describe(value)}")
        return None
    if not value.value:
        r.problem(value, sub, f"'{key}' needs at least one condition")
        return None
    children = [_node(child, r, f"{sub}[{i}]", stage, depth + 1, budget) for i, child in enumerate(value.value)]
    if any(c is None for c in children):
        return None
    return All(tuple(children)) if key == "all" else Any_(tuple(children))


def _test(node: Node, items: dict, r: Reader, path: str, stage: str | None) -> Condition | None:
    ops = [k for k in items if k in OPERATORS]
    if "fact" not in items:
        r.problem(node, path, "a condition needs 'fact' and one operator, or one of all / any / not")
        return None
    if not ops:
        r.problem(node, path, "a fact test needs one operator: " + ", ".join(OPERATORS))
        return None
    if len(ops) > 1:
        r.problem(items[ops[1]][0], path, f"a fact test has exactly one operator, this one has "
                                          f"{' and '.join(ops)}; combine tests with all: [...]")
        return None
    fnode = items["fact"][1]
    try:
        name = text(fnode, r, f"{path}.fact")
    except Invalid as e:
        r.problem(fnode, f"{path}.fact", e.message)
        return None
    fact = FACTS.get(name)
    if fact is None:
        r.problem(fnode, f"{path}.fact", f"unknown fact '{name}'" + _suggest_fact(name))
        return None
    op = ops[0]
    sub = f"{path}.{op}"
    ok = True
    if stage == "submit" and fact.stage == "recipient":
        r.problem(fnode, f"{path}.fact", f"{name} is a per-recipient fact: it exists only for rules "
                                         "with stage recipient, not stage submit")
        ok = False
    allowed = OPERATORS_BY_TYPE[fact.type]
    if op not in allowed:
        r.problem(items[op][0], sub, f"operator '{op}' does not apply to {name}, {_a(fact.type)} fact; "
                                     f"use one of: {', '.join(allowed)}")
        return None
    try:
        value = _operand(fact, op, items[op][1], r, sub)
    except Invalid as e:
        r.problem(e.node or items[op][1], e.path or sub, e.message)
        return None
    return Compare(name, op, value) if ok else None


def _a(type_: str) -> str:
    return ("an " if type_ == "int" else "a ") + type_


def _suggest_fact(name: str) -> str:
    hint = suggest(name, FACTS)
    return hint if hint.startswith(" (") else " (the facts are listed in docs/rules.md)"


def _operand(fact: Fact, op: str, node: Node, r: Reader, path: str):
    if op == "exists":
        value = scalar(node)
        if not isinstance(value, bool):
            raise Invalid(f"'exists' takes true or false, got {describe(node)}")
        return value
    if op in ("in", "not_in"):
        if not isinstance(node, SequenceNode):
            raise Invalid(f"'{op}' takes a list of values, got {describe(node)}")
        if not node.value:
            raise Invalid(f"'{op}' needs at least one value")
        if len(node.value) > MAX_LIST_VALUES:
            raise Invalid(f"'{op}' has {len(node.value)} values; the rules engine takes at most {MAX_LIST_VALUES} "
                          "— use a number list or keyword group for longer lists")
        return tuple(_value(fact, child, r, f"{path}[{i}]") for i, child in enumerate(node.value))
    if op == "matches":
        return _regex(fact, node, r, path)
    if op == "contains":
        value = _text(fact, node, r, path, "a string")
        if not value:
            raise Invalid("'contains' needs a non-empty value")
        if fact.type == "list":
            _reference(fact, value, node, r, path)
        return value
    return _value(fact, node, r, path)


def _value(fact: Fact, node: Node, r: Reader, path: str):
    """One value compared with the fact: of the fact's type, from its enum, naming what exists."""
    if fact.type == "bool":
        value = scalar(node)
        if not isinstance(value, bool):
            raise Invalid(f"{fact.name} is a bool fact: compare it with true or false, got {describe(node)}",
                          node, path)
        return value
    if fact.type == "int":
        value = scalar(node)
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"{fact.name} is an int fact: expected an integer, got {describe(node)}", node, path)
        if not -MAX_INT <= value <= MAX_INT:
            raise Invalid(f"{value} is outside the integers the rules engine compares exactly "
                          f"(-{MAX_INT} to {MAX_INT}, ±2^53)", node, path)
        return value
    value = _text(fact, node, r, path, "a string")
    allowed = ENUMS.get(fact.name)
    if allowed is not None and value not in allowed:
        raise Invalid(f"'{value}' is not a value of {fact.name}; allowed: {', '.join(allowed)}", node, path)
    if fact.name == "recipient.number":
        number = normalize_number(value)
        if number is None:
            raise Invalid(f"recipient.number holds 11-digit mobile numbers, got {value!r}", node, path)
        return number
    if fact.name == "message.fee_code" and value.isdigit():
        return value.lstrip("0") or "0"
    if value:  # '' means "none" for route.channel and message.template_id
        _reference(fact, value, node, r, path)
    return value


def _text(fact: Fact, node: Node, r: Reader, path: str, what: str) -> str:
    try:
        return text(node, r, path)
    except Invalid:
        raise Invalid(f"{fact.name} is {_a(fact.type)} fact: expected {what}, got {describe(node)}",
                      node, path) from None


def _reference(fact: Fact, value: str, node: Node, r: Reader, path: str) -> None:
    target = REFERENCE_FACTS.get(fact.name)
    if target is not None:
        r.ref(target[0], value, node, path, target[1])


def _regex(fact: Fact, node: Node, r: Reader, path: str) -> str:
    pattern = _text(fact, node, r, path, "a regular expression (a string)")
    if not pattern:
        raise Invalid("'matches' needs a non-empty regular expression")
    try:
        re.compile(pattern)
    except re.error as e:
        raise Invalid(f"invalid regular expression '{pattern}': {e.msg} at position {e.pos}") from None
    # the durable_rules dialect module belongs to the engine; imported here, not at module load,
    # so the loader does not pull in the engine for rule sets that use no regex
    from ..engine.dialect import DialectError, to_durable
    try:
        to_durable(pattern)
    except DialectError as e:
        raise Invalid(f"the rules engine cannot run the regular expression '{pattern}': {e}") from None
    return pattern
