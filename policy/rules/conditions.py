"""The `when` condition of a policy rule, as a small typed tree.

YAML shape (one key per node, validated by the loader):
    {all: [cond, ...]} | {any: [cond, ...]} | {not: cond}
    {fact: NAME, <op>: VALUE}   with op one of OPERATORS

Both evaluators (the durable_rules compiler and the plain-Python oracle) consume this tree,
so a rule means the same thing to both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

# op -> what it means; `contains` is substring on str facts and membership on list facts;
# `matches` is a Python-syntax regex searched anywhere in the value (the compiler translates it
# to durable_rules' whole-string dialect or refuses it at load time).
OPERATORS = {
    "eq": "equal to",
    "ne": "not equal to",
    "lt": "less than",
    "le": "less than or equal to",
    "gt": "greater than",
    "ge": "greater than or equal to",
    "in": "one of a list of values",
    "not_in": "none of a list of values",
    "contains": "string contains the value / list contains the item",
    "matches": "regular expression found in the string",
    "exists": "the fact is present (true) or absent (false)",
}


@dataclass(frozen=True)
class Compare:
    fact: str
    op: str
    value: Any


@dataclass(frozen=True)
class All:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class Any_:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class Not:
    item: "Condition"


Condition = Union[Compare, All, Any_, Not]


def facts_used(cond: Condition) -> set[str]:
    if isinstance(cond, Compare):
        return {cond.fact}
    if isinstance(cond, Not):
        return facts_used(cond.item)
    out: set[str] = set()
    for item in cond.items:
        out |= facts_used(item)
    return out
