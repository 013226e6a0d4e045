"""Building rules and facts for the engine tests without the YAML loader."""
from __future__ import annotations

from policy.engine.durable_engine import DurableRules
from policy.engine.oracle import OracleRules
from policy.rules.conditions import Compare
from policy.rules.model import Rule
from policy.vocabulary import engine_key



class DurableSplit(DurableRules):
    """DurableRules called as the pipeline calls it for recipients: the message facts' part
    made by message_part(), the recipient's facts read by match()."""

    def match(self, facts: dict, message_part: str | None = None):
        return super().match(facts, self.message_part(facts) if message_part is None else message_part)


ENGINES = (DurableRules, DurableSplit, OracleRules)


def rule(i: int, when, priority: int = 10, mode: str = "enforce", stage: str = "recipient") -> Rule:
    return Rule(id=f"r{i}", stage=stage, action="reject", code="MA:0001", priority=priority, mode=mode,
                description="", when=when, index=i)


def facts(**by_name) -> dict:
    """facts(**{"message.content": "x"}) -> {"message__content": "x"}"""
    return {engine_key(name): v for name, v in by_name.items()}


def ids(rules: list[Rule]) -> list[str]:
    return [r.id for r in rules]


def matches_one(engine_cls, fact: str, op: str, value, given) -> bool:
    """Whether the single rule `fact op value` matches facts {fact: given} (given None: fact absent)."""
    engine = engine_cls([rule(0, Compare(fact, op, value))], "one")
    try:
        return bool(engine.match({} if given is None else facts(**{fact: given})))
    finally:
        engine.close()
