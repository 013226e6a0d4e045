"""Why a message gets its decision: the facts, every rule evaluated and whether it matched.

The same report is built from a local evaluation (OfflinePolicy, explain=True) or from a running
daemon's answer to Evaluate(explain=true), and printed as text or JSON.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..api.v1 import policy_pb2 as pb
from ..daemon.decision import Decision
from ..rules.model import PolicySet
from ..vocabulary import FACTS, engine_key

_FACT_NAMES = {engine_key(name): name for name in FACTS}
_MESSAGE_KEYS = {engine_key(f.name) for f in FACTS.values() if f.stage == "message"}
_ACTIONS = {pb.ACTION_ACCEPT: "accept", pb.ACTION_REJECT: "reject", pb.ACTION_HOLD: "hold"}
_MODES = {pb.RULE_MODE_ENFORCE: "enforce", pb.RULE_MODE_SHADOW: "shadow"}


@dataclass
class RuleTrace:
    rule_id: str
    recipient_index: int       # -1: the submit stage
    matched: bool
    mode: str                  # enforce | shadow
    code: str
    priority: int
    description: str = ""


@dataclass
class RecipientOutcome:
    destination: str
    normalized: str
    action: str
    code: str
    rule_id: str
    channel_id: str
    shadow_rule_ids: list[str]
    reason: str


@dataclass
class Explanation:
    rules_version: str
    message_facts: dict                       # dotted fact name -> value
    recipient_facts: list[dict]               # per recipient, its own facts only
    rules: list[RuleTrace]
    submit_result: int
    submit_rule_id: str
    submit_reason: str
    recipients: list[RecipientOutcome]
    counters: list[tuple[str, int, int, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "rules_version": self.rules_version,
            "facts": {"message": self.message_facts, "recipients": self.recipient_facts},
            "rules": [asdict(t) for t in self.rules],
            "decision": {
                "submit_result": self.submit_result,
                "submit_rule_id": self.submit_rule_id,
                "submit_reason": self.submit_reason,
                "recipients": [asdict(r) for r in self.recipients],
            },
            "counters": [{"key": k, "value": v, "limit": lim, "limit_id": lid}
                         for k, v, lim, lid in self.counters],
        }


def _named(facts: dict, message: bool) -> dict:
    """Dotted vocabulary names, message facts or recipient facts only (no engine internals)."""
    return {_FACT_NAMES[k]: v for k, v in facts.items()
            if k in _FACT_NAMES and (k in _MESSAGE_KEYS) == message}


def from_decision(d: Decision, policy: PolicySet) -> Explanation:
    """From a local evaluation made with explain=True."""
    described = {r.id: r.description for r in policy.rules}
    return Explanation(
        rules_version=d.rules_version,
        message_facts=_named(d.facts.get("message", {}), True),
        recipient_facts=[_named(f, False) for f in d.facts.get("recipients", [])],
        rules=[RuleTrace(rid, index, matched, mode, code, priority, described.get(rid, ""))
               for rid, index, matched, mode, code, priority in d.trace],
        submit_result=d.submit_result, submit_rule_id=d.submit_rule_id,
        submit_reason=d.submit_reason,
        recipients=[RecipientOutcome(r.destination, r.normalized, r.action, r.code, r.rule_id,
                                     r.channel_id, list(r.shadow_rule_ids), r.reason)
                    for r in d.recipients],
        counters=[tuple(c) for c in d.counters])


def from_response(resp: pb.EvaluateResponse) -> Explanation:
    """From a daemon's EvaluateResponse to a request with explain=true."""
    facts = json.loads(resp.explanation.facts_json or "{}")
    described = {m.rule_id: m.description for m in resp.matches}
    return Explanation(
        rules_version=resp.rules_version,
        message_facts=_named(facts.get("message", {}), True),
        recipient_facts=[_named(f, False) for f in facts.get("recipients", [])],
        rules=[RuleTrace(t.rule_id, t.recipient_index, t.matched, _MODES.get(t.mode, "enforce"),
                         t.code, t.priority, described.get(t.rule_id, ""))
               for t in resp.explanation.rules],
        submit_result=resp.submit_result, submit_rule_id=resp.submit_rule_id,
        submit_reason=resp.submit_reason,
        recipients=[RecipientOutcome(r.destination, r.normalized, _ACTIONS.get(r.action, "?"), r.code,
                                     r.rule_id, r.channel_id, list(r.shadow_rule_ids), r.reason)
                    for r in resp.recipients],
        counters=[(c.key, c.value, c.limit, c.limit_id) for c in resp.counters])


# ----------------------------------------------------------------------------- text
def render(e: Explanation) -> str:
    out: list[str] = [f"rules version {e.rules_version}", "", "message facts"]
    out += _facts(e.message_facts)
    out += ["", _stage_title("submit stage", [t for t in e.rules if t.recipient_index == -1])]
    out += _rules([t for t in e.rules if t.recipient_index == -1], e.submit_rule_id)
    if e.submit_result:
        out += ["", f"decision: the whole message is refused with submit result {e.submit_result} "
                    f"by rule {e.submit_rule_id or '(none: ' + e.submit_reason + ')'}",
                "recipient rules are not evaluated for a refused message"]
        return "\n".join(out) + "\n"
    for i, r in enumerate(e.recipients):
        traces = [t for t in e.rules if t.recipient_index == i]
        out += ["", f"recipient {i}: {r.destination}" + (f" ({r.normalized})" if r.normalized != r.destination else "")]
        if i < len(e.recipient_facts):
            out += ["  facts"] + ["  " + line for line in _facts(e.recipient_facts[i])]
        out += ["  " + _stage_title("recipient stage", traces)]
        out += ["  " + line for line in _rules(traces, r.rule_id)]
        out.append(f"  decision: {_outcome(r, {t.rule_id for t in traces})}")
    if e.counters:
        out += ["", "counters read (value before this message / limit)"]
        width = max(len(k) for k, *_ in e.counters)
        out += [f"  {k.ljust(width)}  {v}/{lim}  {lid}" for k, v, lim, lid in e.counters]
    rule_ids = {t.rule_id for t in e.rules}
    out += ["", "decision: submit result 0; " + "; ".join(
        f"{r.destination} {_outcome(r, rule_ids)}" for r in e.recipients)]
    return "\n".join(out) + "\n"


def _facts(facts: dict) -> list[str]:
    if not facts:
        return ["  (none)"]
    width = max(len(k) for k in facts)
    return [f"  {k.ljust(width)}  {json.dumps(v, ensure_ascii=False)}" for k, v in facts.items()]


def _stage_title(title: str, traces: list[RuleTrace]) -> str:
    matched = sum(t.matched for t in traces)
    shadow = sum(t.matched and t.mode == "shadow" for t in traces)
    extra = f", {shadow} of them shadow" if shadow else ""
    return f"{title}: {len(traces)} rules evaluated, {matched} matched{extra}"


def _rules(traces: list[RuleTrace], deciding: str) -> list[str]:
    if not traces:
        return []
    ordered = sorted(traces, key=lambda t: -t.priority)   # stable: file order breaks ties
    width = max(len(t.rule_id) for t in ordered)
    lines = []
    for t in ordered:
        mark = "yes" if t.matched else "no "
        note = ""
        if t.mode == "shadow":
            note = "  [shadow: recorded, never enforced]"
        elif t.matched and t.rule_id == deciding:
            note = "  <- decides"
        elif t.matched:
            note = "  (outranked)"
        lines.append(f"  {mark}  {t.rule_id.ljust(width)}  {t.code:<7}  priority {t.priority:<5}{note}".rstrip())
    return lines


def _outcome(r: RecipientOutcome, rule_ids: set[str]) -> str:
    if r.action == "accept":
        text = f"accept via {r.channel_id}"
    elif r.action == "hold":
        text = f"hold for manual audit by {r.rule_id} (route {r.channel_id or 'none'})"
    else:
        by = r.rule_id if r.rule_id in rule_ids else f"limit {r.rule_id}" if r.rule_id else "(no rule)"
        text = f"reject {r.code} by {by}"
        if r.reason and not r.rule_id:
            text += f": {r.reason}"
    if r.shadow_rule_ids:
        text += f"; shadow matches: {', '.join(r.shadow_rule_ids)}"
    return text
