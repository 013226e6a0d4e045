"""What one evaluation decides, as plain data (converted to protobuf at the gRPC edge)."""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

ACCEPT, REJECT, HOLD = "accept", "reject", "hold"

# Codes the daemon itself gives when no rule names one.
UNDEFINED_ERROR = "MA:0009"      # a rule rejected without naming a code
INTERNAL_ERROR = "MA:0011"       # evaluating this recipient failed inside the daemon
BALANCE_CODE = 15                # submit result: prepaid balance too low


@dataclass(slots=True)
class Match:
    rule_id: str
    code: str
    priority: int
    mode: str
    recipient_index: int  # -1 for submit-stage rules
    description: str = ""


@dataclass(slots=True)
class RecipientResult:
    destination: str
    normalized: str
    action: str
    code: str = ""
    rule_id: str = ""
    channel_id: str = ""
    segments: int = 1
    message_id: str = ""
    shadow_rule_ids: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass(slots=True)
class Decision:
    decision_id: str
    request_id: str
    rules_version: str
    submit_result: int = 0
    submit_rule_id: str = ""
    submit_reason: str = ""
    recipients: list[RecipientResult] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    counters: list[tuple[str, int, int, str]] = field(default_factory=list)
    segments: int = 1
    balance_after: int = 0
    replayed: bool = False
    # kept for the decision log and explain; not sent unless asked
    facts: dict = field(default_factory=dict)
    trace: list[tuple[str, int, bool, str, str, int]] = field(default_factory=list)
    # the serialized answer: remembered for retries of the same request id
    stored_response: bytes = b""
    # prepaid accounts: {"before": fen, "debit": fen or None when refused}; for exact replay of 15
    balance: dict | None = None
    errors: list[str] = field(default_factory=list)


class _DecisionIds:
    """32 hex digits, unique across processes and restarts without uuid4's urandom call per id: a
    random 80-bit prefix per process (drawn again in a forked child) and a 48-bit counter."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._next = itertools.count().__next__  # one C call: atomic under the GIL

    def __call__(self) -> str:
        return f"{self._prefix}{self._next():012x}"


new_decision_id = _DecisionIds()
os.register_at_fork(after_in_child=new_decision_id.reset)
