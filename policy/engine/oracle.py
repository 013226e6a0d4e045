"""The same rules evaluated in plain Python: the reference the durable evaluator is tested against.

It shares with DurableRules only what defines the semantics (semantics.py: which rules are
valid, how fact values are read). Everything else is independent: it evaluates the rule's
original condition tree with three-valued logic (a test of an absent fact is unknown, `not`
keeps unknown unknown, a rule fires only on true) where DurableRules compiles the tree pushed
to negation normal form, and it runs `matches` with Python's `re` where DurableRules runs
textmatch's automaton.
"""
from __future__ import annotations

import re
import threading
from typing import Callable, Sequence

from ..rules.conditions import All, Any_, Compare, Not
from ..rules.model import Rule
from ..vocabulary import engine_key
from . import RulesClosed
from .dialect import PATTERN_FLAGS
from .semantics import facts_read, prepare_rules, read_facts

# three-valued results: True, False, None (unknown)
Predicate = Callable[[dict], "bool | None"]


class OracleRules:
    """Every rule of `rules` that matches a flat facts dict, evaluated in Python."""

    def __init__(self, rules: Sequence[Rule], name: str, shard_size: int = 48):
        prepared = prepare_rules(rules)   # shard_size: accepted for the common interface, nothing to shard
        self.name = name
        self._read = facts_read(prepared)
        ordered = sorted((p.rule for p in prepared), key=lambda r: (-r.priority, r.index))
        self._checks = [(rule, _predicate(rule.when)) for rule in ordered]
        self._closed = False
        self._lock = threading.Lock()

    def match(self, facts: dict) -> list[Rule]:
        if self._closed:
            raise RulesClosed(f"rules '{self.name}' were closed")
        values = read_facts(facts, self._read)
        return [rule for rule, check in self._checks if check(values) is True]

    def close(self) -> None:
        with self._lock:
            self._closed = True


def _predicate(cond) -> Predicate:
    if isinstance(cond, Not):
        inner = _predicate(cond.item)

        def negation(v):
            r = inner(v)
            return None if r is None else not r
        return negation
    if isinstance(cond, All):
        parts = [_predicate(c) for c in cond.items]

        def conjunction(v):
            result = True
            for p in parts:
                r = p(v)
                if r is False:
                    return False
                if r is None:
                    result = None
            return result
        return conjunction
    if isinstance(cond, Any_):
        parts = [_predicate(c) for c in cond.items]

        def disjunction(v):
            result = False
            for p in parts:
                r = p(v)
                if r is True:
                    return True
                if r is None:
                    result = None
            return result
        return disjunction
    return _compare(cond)


def _compare(cmp: Compare) -> Predicate:
    key, op, value = engine_key(cmp.fact), cmp.op, cmp.value
    if op == "exists":
        return lambda v: (key in v) == value
    test = _test(op, value)

    def compare(v):
        x = v.get(key, _ABSENT)
        return None if x is _ABSENT else test(x)
    return compare


def _test(op: str, value) -> Callable[[object], bool]:
    if op == "eq":
        return lambda x: x == value
    if op == "ne":
        return lambda x: x != value
    if op == "lt":
        return lambda x: x < value
    if op == "le":
        return lambda x: x <= value
    if op == "gt":
        return lambda x: x > value
    if op == "ge":
        return lambda x: x >= value
    if op == "in":
        return frozenset(value).__contains__
    if op == "not_in":
        values = frozenset(value)
        return lambda x: x not in values
    if op == "contains":     # substring of a str, item of a list
        return lambda x: value in x
    if op == "matches":
        search = re.compile(value, PATTERN_FLAGS).search
        return lambda x: search(x) is not None
    raise AssertionError(f"unhandled operator {op}")


_ABSENT = object()
