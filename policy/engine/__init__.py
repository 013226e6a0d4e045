"""Rule evaluation: the YAML condition trees compiled into durable_rules, and a plain-Python oracle.

Both evaluators (`DurableRules` in durable_engine.py, `OracleRules` in oracle.py) take the loaded
`Rule`s of one stage and answer `match(facts) -> [Rule, ...]` with the same semantics, written down
in semantics.py. This module holds only the errors, so importing it never loads the C extension.
"""
from __future__ import annotations


class EngineError(RuntimeError):
    """Evaluating one message failed inside the rules engine; the evaluator stays usable.

    The daemon answers such a message with MA:0011 and keeps serving.
    """


class FactTypeError(EngineError):
    """A fact given to match() has a value of the wrong type for the vocabulary (a fact-builder bug)."""


class RulesClosed(RuntimeError):
    """match() on an evaluator that was closed (replaced by a reload); re-read the current one."""


class RuleCompileError(ValueError):
    """Rules the engine cannot run; `problems` holds one line per problem, naming the rule."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))
