"""Re-evaluate one recorded decision under a rules version, from what the decision log recorded.

What is replayed: the submit-stage rules over the recorded message facts, the recipient-stage
rules over the recorded message + recipient facts, the choice among the matches (highest
priority first, shadow rules and the global shadow switch never decide), and the limits over
the recorded counter values. Nothing is looked up again: lists, accounts, keywords, templates
and routes enter only through the recorded facts, exactly as they were at the time.

Limits. The log records every counter the store read, in read order, as (key, value before,
limit, limit id). The first read of a key in a decision is the stored value (a recipient adds
only to keys it read, so nothing of this decision was counted in it yet); the replay walks the
recipients through the same all-or-nothing rule as the counter stores (policy.counters.walk)
from those stored values. Under the version that made the decision the replay must read the
same keys and produce the same values list. Under a candidate, a limit that still exists with
the same window finds its recorded value and is checked against the candidate's `max`; a key
that was never read (a new limit, a changed window, a recipient that was refused before its
limits were reached) has no recorded value and counts as 0, and is reported as such.

What cannot be re-evaluated is carried over from the record and counted apart:
- a recipient refused with MA:0011 and no rule: evaluating it failed inside the daemon, and it
  has no recorded facts;
- a refusal for prepaid balance (submit result 15, no rule): balances are not recorded, so it
  is carried over when the replay still has something to debit;
- under a candidate, recipients of a message the recorded version refused at submit level:
  their facts were never computed.
"""
from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from ..counters import LimitPlan, RecipientCharge
from ..counters.walk import Walk
from ..daemon.decision import ACCEPT, BALANCE_CODE, HOLD, INTERNAL_ERROR, REJECT, UNDEFINED_ERROR
from ..engine.durable_engine import DurableRules
from ..rules.conditions import facts_used
from ..rules.loader import load_policy
from ..rules.model import PolicySet, Rule
from ..vocabulary import FACTS, engine_key

CACHE_SIZE = 50_000          # distinct fact combinations remembered per stage
_CONTENT_HASH_FIELD = {"anc": 4, "cc": 3}  # scope tag -> position of the content hash in a key


# ----------------------------------------------------------------------------- compiled rules
# Facts that are nearly unique per message or per recipient: memoizing on them gains nothing, so
# rules reading them are evaluated apart from the others, whose few facts repeat all the time.
VOLATILE_FACTS = frozenset({"message.content", "message.src_id", "recipient.number",
                            "recipient.segment"})


class _Group:
    """Some rules of a stage, compiled into durable_rules, with their matches memoized on the
    values of the facts they read (a rule's verdict depends on nothing else)."""

    def __init__(self, rules: list[Rule], name: str, cache_size: int):
        self.engine = DurableRules(rules, name, 48)
        used = set()
        for rule in rules:
            used |= facts_used(rule.when)
        message = sorted(f for f in used if FACTS[f].stage == "message")
        recipient = sorted(f for f in used if FACTS[f].stage == "recipient")
        self.m_plain = [engine_key(f) for f in message if FACTS[f].type != "list"]
        self.m_lists = [engine_key(f) for f in message if FACTS[f].type == "list"]
        self.r_plain = [engine_key(f) for f in recipient if FACTS[f].type != "list"]
        self.r_lists = [engine_key(f) for f in recipient if FACTS[f].type == "list"]
        self.cache_size = cache_size
        self.cache: OrderedDict[tuple, list[Rule]] = OrderedDict()
        self.calls = 0

    def message_part(self, mfacts: dict) -> tuple:
        get = mfacts.get
        return (*map(get, self.m_plain), *(_frozen(get(k)) for k in self.m_lists))

    def key(self, mpart: tuple, rfacts: dict | None) -> tuple:
        if rfacts is None:
            return mpart
        get = rfacts.get
        return (mpart, *map(get, self.r_plain), *(_frozen(get(k)) for k in self.r_lists))


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


class StageMatcher:
    """One stage's rules: match(mfacts, rfacts) is what DurableRules.match gives for the merged
    facts, every matching rule sorted by (-priority, index).

    The rules are split into a stable group and a volatile one (VOLATILE_FACTS), each compiled
    on its own and memoized on the facts it reads: a rule's verdict depends on nothing else, and
    recorded traffic repeats the stable facts all the time (one account, many messages; one
    message, many recipients), so most recipients cost a dict lookup instead of an engine call.
    Rules match independently of each other, so the union of the groups' matches, sorted the
    same way, is the stage's answer. `cache_size` 0 runs the engine every time.
    """

    def __init__(self, rules: list[Rule], name: str, cache_size: int = CACHE_SIZE):
        stable = [r for r in rules if not facts_used(r.when) & VOLATILE_FACTS]
        volatile = [r for r in rules if facts_used(r.when) & VOLATILE_FACTS]
        self.groups = [_Group(g, f"{name}-{tag}", cache_size)
                       for g, tag in ((stable, "stable"), (volatile, "volatile")) if g]
        self.cache_size = cache_size
        self.lookups = 0

    @property
    def calls(self) -> int:
        return sum(g.calls for g in self.groups)

    def message_parts(self, mfacts: dict) -> list[tuple]:
        """The message facts' share of every group's cache key; computed once per message."""
        return [g.message_part(mfacts) for g in self.groups]

    def match(self, mfacts: dict, rfacts: dict | None = None,
              parts: list[tuple] | None = None) -> list[Rule]:
        self.lookups += 1
        if parts is None:
            parts = self.message_parts(mfacts)
        merged = None
        hits: list[Rule] = []
        for group, mpart in zip(self.groups, parts):
            key = group.key(mpart, rfacts)
            found = group.cache.get(key) if self.cache_size else None
            if found is None:
                if merged is None:
                    merged = mfacts if rfacts is None else {**mfacts, **rfacts}
                group.calls += 1
                found = group.engine.match(merged)
                if self.cache_size:
                    group.cache[key] = found
                    if len(group.cache) > self.cache_size:
                        group.cache.popitem(last=False)
            if found:
                hits = found if not hits else hits + found
        if len(self.groups) > 1 and hits:
            hits = sorted(hits, key=_rank)
        return hits

    def close(self) -> None:
        for group in self.groups:
            group.engine.close()


def _rank(rule: Rule) -> tuple[int, int]:
    return (-rule.priority, rule.index)


class CompiledRules:
    """What a replay needs of one rules version: both stages compiled, the limit plan, the zone."""

    def __init__(self, policy: PolicySet, label: str, cache_size: int = CACHE_SIZE):
        self.policy = policy
        self.version = policy.version
        self.shadow_all = policy.platform.shadow_all
        self.submit = StageMatcher([r for r in policy.rules if r.stage == "submit"],
                                   f"{label}-submit", cache_size)
        self.recipient = StageMatcher([r for r in policy.rules if r.stage == "recipient"],
                                      f"{label}-recipient", cache_size)
        self.limits = LimitPlan(policy.limits)
        self.limit_ids = {lim.id for lim in policy.limits}
        self.tz = ZoneInfo(policy.platform.timezone)

    def is_shadow(self, rule: Rule) -> bool:
        return self.shadow_all or rule.mode == "shadow"

    def close(self) -> None:
        self.submit.close()
        self.recipient.close()


def compile_folder(rules_dir: str, label: str, cache_size: int = CACHE_SIZE) -> CompiledRules:
    """PolicyError when the folder is not valid."""
    return CompiledRules(load_policy(rules_dir), label, cache_size)


class VersionCache:
    """Rules versions from the version store, each materialized and compiled once."""

    def __init__(self, store, cache_size: int = CACHE_SIZE):
        self.store = store
        self.cache_size = cache_size
        self._tmp = tempfile.TemporaryDirectory(prefix="smspolicy-replay-")
        self._compiled: dict[str, CompiledRules] = {}
        self._missing: dict[str, str] = {}   # version -> why it cannot be loaded

    def get(self, version: str) -> CompiledRules:
        """KeyError (with the reason) when the version cannot be loaded."""
        compiled = self._compiled.get(version)
        if compiled is not None:
            return compiled
        if version in self._missing:
            raise KeyError(self._missing[version])
        try:
            folder = materialize(self.store, version, os.path.join(self._tmp.name, version))
            policy = load_policy(folder)
            if policy.version != version:
                raise ValueError(f"its stored files load as version {policy.version}")
        except Exception as e:  # noqa: BLE001 - reported per decision, the replay goes on
            reason = f"rules version {version or '(none)'} cannot be loaded: {e}"
            self._missing[version] = reason
            raise KeyError(reason) from None
        compiled = self._compiled[version] = CompiledRules(policy, f"replay-{version}", self.cache_size)
        return compiled

    @property
    def loaded(self) -> list[CompiledRules]:
        return list(self._compiled.values())

    def close(self) -> None:
        for compiled in self._compiled.values():
            compiled.close()
        self._tmp.cleanup()


def materialize(store, version: str, dest: str) -> str:
    """Write a stored version to `dest` so that it loads: the file-blacklist folder is live data,
    not part of a version, so an empty one is created where the rules expect it."""
    import yaml

    folder = store.materialize(version, dest)
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if not name.endswith((".yaml", ".yml")):
                continue
            with open(os.path.join(dirpath, name), "rb") as fh:
                doc = yaml.safe_load(fh)
            section = doc.get("file_blacklist") if isinstance(doc, dict) else None
            target = section.get("folder") if isinstance(section, dict) else None
            if isinstance(target, str) and not os.path.isabs(target):
                os.makedirs(os.path.join(folder, target), exist_ok=True)
    return folder


# ----------------------------------------------------------------------------- one record
@dataclass
class Outcome:
    """What a rules version decides for one recorded message."""
    submit_result: int = 0
    submit_rule_id: str = ""
    # (action, code, rule_id, channel_id) per recipient; None: not evaluated (see `not_evaluated`)
    recipients: list[tuple[str, str, str, str] | None] = field(default_factory=list)
    shadow: list[list[str]] = field(default_factory=list)     # shadow rule ids per recipient
    submit_shadow: list[str] = field(default_factory=list)
    matches: list[tuple[str, str, int, str, int]] = field(default_factory=list)
    counters: list[tuple[str, int, int, str]] = field(default_factory=list)
    unrecorded_counters: list[str] = field(default_factory=list)  # keys read without a recorded value
    internal_failures: int = 0        # MA:0011 recipients carried over
    balance_carried: bool = False     # a recorded balance refusal was carried over
    not_evaluated: str = ""           # why the recipients could not be evaluated


class _StoredValues(dict):
    """Recorded stored values by key; a key never read at the time reads as 0 and is noted."""

    def __init__(self, values):
        super().__init__()
        for key, before, _limit, _limit_id in values:
            if key not in self:
                self[key] = before
        self.unrecorded: list[str] = []

    def __missing__(self, key):
        self.unrecorded.append(key)
        return 0


def recorded_recipient_facts(record: dict) -> list[dict | None]:
    """The recorded facts of each recipient, None for those whose evaluation failed (refused
    with MA:0011 and no rule). The pipeline records no facts for a failed recipient, so the
    facts list is then shorter than the results; a list of equal length (a placeholder in the
    failed one's place) is taken position by position."""
    results = (record.get("results") or {}).get("recipients") or []
    facts = (record.get("facts") or {}).get("recipients") or []
    if not results:             # a balance refusal keeps its facts but no results
        return list(facts)
    if len(facts) == len(results):
        return [None if _failed(r) else f for r, f in zip(results, facts)]
    it = iter(facts)
    return [None if _failed(r) else next(it, None) for r in results]


def _failed(result: dict) -> bool:
    return result.get("code") == INTERNAL_ERROR and not result.get("rule_id")


def evaluate(record: dict, rules: CompiledRules) -> Outcome:
    """The decision `rules` gives the recorded message, from its recorded facts and counters."""
    out = Outcome()
    facts = record.get("facts") or {}
    mfacts = facts.get("message") or {}
    results = record.get("results") or {}
    recorded_submit = int(results.get("submit_result") or 0)
    balance_refusal = recorded_submit == BALANCE_CODE and not results.get("submit_rule_id")

    chosen = _decide(rules, rules.submit.match(mfacts), -1, out, out.submit_shadow)
    if chosen is not None:
        out.submit_result = int(chosen.code)
        out.submit_rule_id = chosen.id
        return out
    if recorded_submit and not balance_refusal:
        # refused at submit when recorded: no recipient was evaluated, no facts were recorded
        out.not_evaluated = "recipient facts not recorded (the message was refused at submit level)"
        out.recipients = [None] * len(record.get("destinations") or [])
        out.shadow = [[] for _ in out.recipients]
        return out

    per_recipient = recorded_recipient_facts(record)
    parts = rules.recipient.message_parts(mfacts)
    for i, rfacts in enumerate(per_recipient):
        shadow: list[str] = []
        out.shadow.append(shadow)
        if rfacts is None:
            out.internal_failures += 1
            out.recipients.append((REJECT, INTERNAL_ERROR, "", ""))
            continue
        rule = _decide(rules, rules.recipient.match(mfacts, rfacts, parts), i, out, shadow)
        channel = rfacts.get("route__channel", "")
        if rule is None:
            out.recipients.append((ACCEPT, "", "", channel))
        elif rule.action == "hold":
            out.recipients.append((HOLD, "", rule.id, channel))
        else:
            out.recipients.append((REJECT, rule.code or UNDEFINED_ERROR, rule.id, channel))

    walk = _limits(record, rules, mfacts, per_recipient, out)
    if balance_refusal:
        account = rules.policy.accounts.get(record.get("account_id") or "")
        debit = walk.segments * account.price if account and account.billing == "prepaid" else 0
        if debit > 0:
            # the balance itself is not recorded: a refusal stands while there is something to debit
            out.balance_carried = True
            out.submit_result = BALANCE_CODE
            out.recipients, out.shadow = [], []
    return out


def _decide(rules: CompiledRules, hits: list[Rule], index: int, out: Outcome,
            shadow: list[str]) -> Rule | None:
    """Record every match; the first enforced one (hits come highest priority first) decides."""
    chosen = None
    for rule in hits:
        is_shadow = rules.is_shadow(rule)
        out.matches.append((rule.id, rule.code or UNDEFINED_ERROR, rule.priority,
                            "shadow" if is_shadow else "enforce", index))
        if is_shadow:
            shadow.append(rule.id)
        elif chosen is None:
            chosen = rule
    return chosen


def _limits(record: dict, rules: CompiledRules, mfacts: dict, per_recipient: list[dict | None],
            out: Outcome) -> Walk:
    recorded = record.get("counters") or []
    content_hash = _content_hash(recorded)
    segments = mfacts.get("message__segments", 1)
    account = record.get("account_id") or ""
    local_now = datetime.fromtimestamp(record["ts"], rules.tz)
    charges = []
    for i, decided in enumerate(out.recipients):
        if decided is None or decided[0] == REJECT:
            continue
        rfacts = per_recipient[i]
        incs = rules.limits.increments(account, decided[3], rfacts.get("recipient__number", ""),
                                       content_hash, segments, local_now)
        charges.append(RecipientCharge(index=i, increments=incs, segments=segments))
    stored = _StoredValues(recorded)
    walk = Walk(charges, stored)
    out.counters = walk.values
    out.unrecorded_counters = stored.unrecorded
    for index, (code, limit_id) in walk.rejected.items():
        channel = out.recipients[index][3]
        out.recipients[index] = (REJECT, code, limit_id, channel)
    return walk


def _content_hash(recorded: list) -> str:
    """The message's content key, as found in a recorded content-scoped counter key."""
    for key, *_ in recorded:
        tag = key.split(":", 1)[0]
        pos = _CONTENT_HASH_FIELD.get(tag)
        if pos is not None:
            parts = key.split(":")
            if len(parts) > pos:
                return parts[pos]
    return "?"  # no content-scoped counter was read; any such key now is unrecorded anyway


# ----------------------------------------------------------------------------- comparison
def recorded_outcome(record: dict) -> Outcome:
    """The record's own decision, in the shape of an Outcome."""
    results = record.get("results") or {}
    out = Outcome(submit_result=int(results.get("submit_result") or 0),
                  submit_rule_id=results.get("submit_rule_id") or "")
    matches = record.get("matches") or []
    out.matches = [(m.get("rule_id"), m.get("code"), m.get("priority"), m.get("mode"),
                    m.get("recipient_index")) for m in matches]
    recipients = results.get("recipients") or []
    out.recipients = [(r.get("action"), r.get("code") or "", r.get("rule_id") or "",
                       r.get("channel_id") or "") for r in recipients]
    out.shadow = [[] for _ in recipients]
    for m in matches:
        if m.get("mode") != "shadow":
            continue
        index = m.get("recipient_index")
        if index == -1:
            out.submit_shadow.append(m.get("rule_id"))
        elif 0 <= index < len(out.shadow):
            out.shadow[index].append(m.get("rule_id"))
    out.counters = [tuple(c) for c in record.get("counters") or []]
    return out


def differences(recorded: Outcome, replayed: Outcome) -> list[str]:
    """Every way the replay differs from the record (empty: reproduced exactly)."""
    problems = []
    if (recorded.submit_result, recorded.submit_rule_id) != (replayed.submit_result, replayed.submit_rule_id):
        problems.append(f"submit result: recorded {_submit(recorded)}, replayed {_submit(replayed)}")
    if len(recorded.recipients) != len(replayed.recipients):
        problems.append(f"recipients: recorded {len(recorded.recipients)}, replayed {len(replayed.recipients)}")
    for i, (a, b) in enumerate(zip(recorded.recipients, replayed.recipients)):
        if a != b:
            problems.append(f"recipient {i}: recorded {format_verdict(a)}, replayed {format_verdict(b)}")
    if recorded.matches != replayed.matches:
        problems.append(f"matches: recorded {_matches(recorded.matches)}, replayed {_matches(replayed.matches)}")
    if [tuple(c) for c in recorded.counters] != [tuple(c) for c in replayed.counters]:
        problems.append(f"counters: recorded {recorded.counters}, replayed {replayed.counters}")
    if replayed.unrecorded_counters:
        problems.append(f"counters read now but not then: {', '.join(replayed.unrecorded_counters)}")
    return problems


def format_verdict(v: tuple[str, str, str, str] | None) -> str:
    if v is None:
        return "not evaluated"
    action, code, rule, channel = v
    if action == ACCEPT:
        return f"accept via {channel or '-'}"
    if action == HOLD:
        return f"hold by {rule}"
    return f"reject {code} by {rule or '(no rule)'}"


def verdict_label(v: tuple[str, str, str, str] | None, submit_result: int = 0) -> str:
    """The short label a diff counts by: accept, hold, MA:00xx, submit NN, or ? (not evaluated)."""
    if submit_result:
        return f"submit {submit_result}"
    if v is None:
        return "?"
    return v[1] if v[0] == REJECT else v[0]


def _submit(o: Outcome) -> str:
    return f"{o.submit_result}" + (f" by {o.submit_rule_id}" if o.submit_rule_id else "")


def _matches(matches) -> str:
    return "[" + ", ".join(f"{m[0]}@{m[4]}" + ("(shadow)" if m[3] == "shadow" else "") for m in matches) + "]"
