"""The evaluator currently serving, replaced atomically on reload.

swap() publishes the new evaluator, then closes the old one; close() waits for the match()
running inside it (it takes the evaluator's lock), so in-flight calls finish on the old rules. A
caller that read the old reference just before the swap finds it closed (RulesClosed) and
match() retries on the new one: every call is answered by exactly one complete rule set.
"""
from __future__ import annotations

from typing import Protocol

from ..rules.model import Rule
from . import RulesClosed


class Evaluator(Protocol):
    def match(self, facts: dict) -> list[Rule]: ...
    def close(self) -> None: ...


class RulesHolder:
    def __init__(self, rules: Evaluator):
        self._current = rules

    def current(self) -> Evaluator:
        return self._current

    def match(self, facts: dict) -> list[Rule]:
        while True:
            rules = self._current
            try:
                return rules.match(facts)
            except RulesClosed:
                if self._current is rules:  # closed without a replacement: nothing to retry on
                    raise

    def swap(self, new: Evaluator) -> Evaluator:
        """Serve `new` from now on; close and return the evaluator it replaces."""
        old, self._current = self._current, new
        old.close()
        return old
