"""One message, N recipients: the daemon's evaluation pipeline, top to bottom.

    1. normalize  — the account, the decoded content, the time in the platform's zone
    2. facts      — message facts once, recipient facts per destination (indexed lookups)
    3. rules      — submit-stage rules on the message, then recipient-stage rules per recipient;
                    every match is recorded, the highest-priority enforced match decides,
                    shadow matches are recorded only
    4. limits     — counters for recipients still accepted, all-or-nothing, idempotent by request id
    5. log        — the whole decision, facts and counter values included, to the decision log
    6. answer     — a submit-level result and one decision per recipient
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from ..counters import CounterStoreError, RecipientCharge
from ..engine import EngineError, RulesClosed
from ..facts.numbers import normalize_number
from ..rules.model import Account, Rule
from ..submission import Submission
from .convert import decision_to_response
from .decision import (ACCEPT, BALANCE_CODE, HOLD, INTERNAL_ERROR, REJECT, UNDEFINED_ERROR,
                       Decision, Match, RecipientResult, new_decision_id)
from .runtime import LoadedPolicy, Runtime

log = logging.getLogger("smspolicy.pipeline")


class UnknownAccount(LookupError):
    pass


def content_key(mfacts: dict) -> str:
    """What same-content limits count by: the decoded text, not its bytes (the same words sent
    as UCS2 and as GBK are the same content)."""
    return hashlib.blake2b(mfacts["message__content"].encode(), digest_size=8).hexdigest()


class Pipeline:
    def __init__(self, runtime: Runtime, counters=None, decision_log=None, metrics=None,
                 clock=time.time):
        self.runtime = runtime
        self.counters = counters          # a CounterStore, or None to skip step 4
        self.decision_log = decision_log  # a DecisionLog, or None
        self.metrics = metrics
        self.clock = clock
        self._batch = threading.local()   # .tokens: durability tokens of the batch being evaluated
        # Batches decided by several gRPC threads at once fight over the GIL (measured: 4 batches
        # in flight cost 136 CPU us/decision against 84 with 1); one batch's steps 1-3 at a time
        # cost 87. Taken only where that loop makes no blocking store call (see evaluate_batch).
        self._steps_lock = threading.Lock()

    # ------------------------------------------------------------------ the pipeline
    def evaluate(self, sub: Submission, now: float | None = None, explain: bool = False) -> Decision:
        now = self.clock() if now is None else now
        try:
            return self._evaluate(self.runtime.current(), sub, now, explain)
        except RulesClosed:  # a reload retired this version under us: decide on the new one
            return self._evaluate(self.runtime.current(), sub, now, explain)

    def _evaluate(self, loaded: LoadedPolicy, sub: Submission, now: float, explain: bool) -> Decision:
        # one rule-set version (`loaded`) decides the whole message
        started = time.perf_counter()

        # a retried request id gets the answer it got the first time, and counts nothing again
        # (stores with recall_in_charge replay it from the charge itself: one trip, not two)
        if self.counters is not None and not getattr(self.counters, "recall_in_charge", False):
            replay = self._recall(sub, now)
            if replay is not None:
                return replay

        # 1. normalize
        account = loaded.policy.accounts.get(sub.account_id)
        if account is None:
            raise UnknownAccount(f"unknown account {sub.account_id!r}")
        local_now = datetime.fromtimestamp(now, loaded.tz)
        decision = Decision(decision_id=new_decision_id(), request_id=sub.request_id,
                            rules_version=loaded.version)

        # 2. message facts
        mfacts = loaded.facts.message_facts(sub, account, local_now)
        decision.segments = mfacts["message__segments"]
        decision.facts = {"message": mfacts, "recipients": []}

        # 3a. submit-stage rules: a hit refuses the whole message synchronously
        reserved = False   # a decision-log slot is held for this decision (3b)
        submit_hit = self._submit_stage(loaded, mfacts, decision, explain)
        if submit_hit is not None:
            decision.submit_result = int(submit_hit.code)
            decision.submit_rule_id = submit_hit.id
            decision.submit_reason = submit_hit.description
        else:
            # 3b. recipient-stage rules
            shared: list = []  # the message's share of the engine payloads, made once
            for i, raw in enumerate(sub.destinations):
                decision.recipients.append(self._recipient_stage(
                    loaded, sub, account, mfacts, i, raw, decision, explain, shared))
            # the log's slot is taken before anything is counted: with fail_closed a slot merely
            # seen free could go to another thread, and the charged decision then be refused
            reserved = self.decision_log is not None
            if reserved and not self.decision_log.reserve():
                if self.counters is not None and getattr(self.counters, "recall_in_charge", False):
                    replay = self._recall(sub, now)  # a retry still gets its first answer
                    if replay is not None:
                        return replay
                # fail closed: a decision that cannot be logged is not made; nothing is counted
                self._fail_closed(decision, "decision log unavailable (log_overflow=fail_closed)")
                return decision

        # 4. limits and balance (a refused submit is a charge of nothing: its answer is kept
        # under the request id like any other, so a retry gets it back even once the reason is
        # gone, e.g. the send window opened)
        if self.counters is not None:
            try:
                self._limits(loaded, sub, account, mfacts, local_now, now, decision, reserved)
            except _Deferred:
                raise   # the batch's job holds the slot
            except BaseException:
                if reserved:
                    self.decision_log.release()
                raise
            if decision.replayed:  # a retry: its first answer, logged the first time
                if reserved:
                    self.decision_log.release()
                return decision

        # 5. log, 6. answer
        self._finish(sub, decision, now, mfacts, started, reserved)
        return decision

    def _finish(self, sub: Submission, decision: Decision, now: float, mfacts: dict,
                started: float, reserved: bool = False) -> None:
        """Steps 5 and 6 (the counter step kept the answer for retries of this request id).
        `reserved`: a log slot was reserved for this decision."""
        if not self._log(sub, decision, now, mfacts, reserved) and self.counters is not None:
            # the log refused it after all (fail_closed race): a retry must get this answer
            decision.stored_response = decision_to_response(decision).SerializeToString()
            try:
                self.counters.remember(sub.request_id, decision.stored_response, now=now)
            except Exception as e:  # noqa: BLE001 - re-raised, marked for evaluate_batch
                raise _RememberFailed(str(e)) from e
        if self.metrics:
            self.metrics.observe(decision, time.perf_counter() - started)

    # ------------------------------------------------------------------ step 3
    def _submit_stage(self, loaded: LoadedPolicy, mfacts: dict, decision: Decision,
                      explain: bool) -> Rule | None:
        try:
            hits = loaded.submit_rules.match(mfacts)
        except EngineError as e:
            log.exception("submit-stage rules failed; refusing nothing at submit level")
            decision.errors.append(f"submit: {e}")
            return None
        if explain:
            self._trace(loaded, "submit", mfacts, hits, -1, decision)
        return self._decide(loaded, hits, -1, decision)

    def _recipient_stage(self, loaded: LoadedPolicy, sub: Submission, account: Account,
                         mfacts: dict, index: int, raw: str, decision: Decision,
                         explain: bool, shared: list) -> RecipientResult:
        message_id = sub.message_ids[index] if index < len(sub.message_ids) else ""
        try:
            # this recipient's own facts; the message's come in once through `shared`
            facts = loaded.facts.recipient_part(mfacts, raw, account)
            if not shared:
                shared.append(loaded.recipient_rules.message_part(mfacts))
            hits = loaded.recipient_rules.match(facts, shared[0])
        except RulesClosed:
            raise
        except Exception:  # noqa: BLE001 - one recipient's failure must not fail the others
            log.exception("evaluating recipient %d of %s failed", index, sub.request_id)
            decision.facts["recipients"].append(None)  # keeps facts and results in step
            decision.errors.append(f"recipient {index}: internal error")
            return RecipientResult(raw, raw, REJECT, INTERNAL_ERROR, "", "", decision.segments,
                                   message_id, reason="internal error while evaluating")
        decision.facts["recipients"].append(facts)  # a fresh dict of the recipient's own keys
        if explain:
            self._trace(loaded, "recipient", {**mfacts, **facts}, hits, index, decision)
        result = RecipientResult(raw, facts["recipient__number"], ACCEPT,
                                 channel_id=facts.get("route__channel", ""),
                                 segments=decision.segments, message_id=message_id)
        rule = self._decide(loaded, hits, index, decision)
        result.shadow_rule_ids = [r.id for r in hits if self._is_shadow(loaded, r)]
        if rule is not None:
            result.action = HOLD if rule.action == "hold" else REJECT
            result.code = "" if result.action == HOLD else (rule.code or UNDEFINED_ERROR)
            result.rule_id = rule.id
            result.reason = rule.description
        return result

    @staticmethod
    def _is_shadow(loaded: LoadedPolicy, rule: Rule) -> bool:
        return rule.mode == "shadow" or loaded.policy.platform.shadow_all

    def _decide(self, loaded: LoadedPolicy, hits: list[Rule], index: int,
                decision: Decision) -> Rule | None:
        """Record every hit; the first enforced one (hits come sorted by priority) decides."""
        chosen = None
        for rule in hits:
            shadow = self._is_shadow(loaded, rule)
            decision.matches.append(Match(rule.id, rule.code or UNDEFINED_ERROR, rule.priority,
                                          "shadow" if shadow else "enforce", index,
                                          rule.description))
            if chosen is None and not shadow:
                chosen = rule
        return chosen

    def _trace(self, loaded, stage, facts, hits, index, decision) -> None:
        hit_ids = {r.id for r in hits}
        for rule in loaded.policy.rules:
            if rule.stage == stage:
                decision.trace.append((rule.id, index, rule.id in hit_ids,
                                       "shadow" if self._is_shadow(loaded, rule) else "enforce",
                                       rule.code or UNDEFINED_ERROR, rule.priority))
        if index >= 0:
            decision.facts["recipients"][-1] = dict(facts)

    # ------------------------------------------------------------------ step 4
    def evaluate_batch(self, subs: list[Submission], now: float | None = None,
                       explain: bool = False) -> list[Decision | Exception]:
        """Evaluate the messages of one EvaluateBatch (or a stream's micro-batch) in order; a
        message's error is its entry in the list, the others still get their decisions.

        Charges go to the store without waiting for each to be durable; the batch waits once,
        for the last, before anything is returned (group commit: one journal transaction for
        the batch with exclusive SQLite). A failed commit fails every message of the batch that
        was charged (CountersUnavailable), as its charge was not applied.
        """
        tokens = self._batch.tokens = []
        defer = self._batch.defer = hasattr(self.counters, "charge_many")
        jobs: list[int] = []
        # not with a store that recalls and commits per message in this loop (shared SQLite):
        # other batches would wait on that I/O. Redis defers its charges to charge_many,
        # exclusive SQLite charges in memory and is waited for below, outside the lock.
        lock = self._steps_lock if (self.counters is None
                                    or getattr(self.counters, "recall_in_charge", False)) else None
        if lock is not None:
            lock.acquire()
        try:
            out: list = []
            for sub in subs:
                try:
                    out.append(self.evaluate(sub, now, explain))
                except _Deferred as d:  # steps 1-3 done, the charge waits for the batch's
                    jobs.append(len(out))
                    out.append(d.job)
                except Exception as e:  # noqa: BLE001 - the caller turns it into a status
                    out.append(e)
        finally:
            if lock is not None:
                lock.release()
            self._batch.tokens = None
            self._batch.defer = False
        if defer and jobs:
            self._charge_deferred(out, jobs)
        if tokens:
            try:
                self.counters.wait_durable(max(tokens))
            except (CounterStoreError, OSError) as e:
                failed = CountersUnavailable(str(e))
                return [failed if isinstance(d, Decision) else d for d in out]
        return out

    def _recall(self, sub: Submission, now: float) -> Decision | None:
        try:
            prior = self.counters.recall(sub.request_id, now)
        except Exception as e:  # noqa: BLE001 - the store is down: nothing may go out unchecked
            raise CountersUnavailable(str(e)) from e
        if prior is not None and prior.stored_response:
            return Decision(decision_id="", request_id=sub.request_id, rules_version="",
                            replayed=True, stored_response=prior.stored_response)
        return None

    def _limits(self, loaded: LoadedPolicy, sub: Submission, account: Account, mfacts: dict,
                local_now: datetime, now: float, decision: Decision, reserved: bool = False) -> None:
        content_hash = content_key(mfacts)
        charges = []
        for i, r in enumerate(decision.recipients):
            if r.action == REJECT:
                continue
            incs = loaded.limits.increments(account.id, r.channel_id, r.normalized, content_hash,
                                            decision.segments, local_now)
            charges.append(RecipientCharge(index=i, increments=incs, segments=decision.segments))
        # a refused submit debits nothing: with the balance at zero it would read as result 15
        debit = account.id if account.billing == "prepaid" and not decision.submit_result else None

        def answer(res) -> bytes:  # the answer a retry of this request id gets back
            self._apply_charge(decision, res, account, debit)
            decision.stored_response = decision_to_response(decision).SerializeToString()
            return decision.stored_response

        if getattr(self._batch, "defer", False):  # evaluate_batch charges the batch in one trip
            raise _Deferred(_Job(sub, charges, debit, account, now, answer, decision, mfacts,
                                 time.perf_counter(), reserved))
        tokens = getattr(self._batch, "tokens", None)  # inside evaluate_batch: it waits once
        try:
            res = self.counters.charge(sub.request_id, charges, debit, account.price, now, answer,
                                       wait=tokens is None)
        except (CounterStoreError, OSError, ConnectionError) as e:
            # unknown outcome: the front-end answers flow control and the customer retries with
            # the same request id, which the store applies at most once
            raise CountersUnavailable(str(e)) from e
        if tokens is not None and res.durable:
            tokens.append(res.durable)
        self._charged(decision, res, account, debit)

    def _charged(self, decision: Decision, res, account: Account, debit: str | None) -> None:
        if res.replayed and res.stored_response:  # a retry: the answer it got the first time
            decision.replayed = True
            decision.stored_response = res.stored_response
        elif res.replayed:  # charged before (a retry whose answer was not kept): as recorded
            self._apply_charge(decision, res, account, debit)

    def _charge_deferred(self, out: list, jobs: list[int]) -> None:
        """Charge the batch's messages that reached step 4 with one store call (charge_many:
        one pipelined round trip with Redis, scripts run in batch order so messages hitting
        the same counter stay exact), then finish each as _evaluate does after step 4."""
        batch = [out[i] for i in jobs]
        try:
            results = self.counters.charge_many(
                [(j.sub.request_id, j.charges, j.debit, j.account.price, j.now, j.answer) for j in batch])
        except (CounterStoreError, OSError, ConnectionError) as e:
            results = [e] * len(batch)
        for i, j, res in zip(jobs, batch, results):
            if j.reserved and (isinstance(res, Exception) or res.replayed):
                self.decision_log.release()   # nothing of it will be logged
            if isinstance(res, Exception):
                out[i] = CountersUnavailable(str(res))
                continue
            decision = j.decision
            self._charged(decision, res, j.account, j.debit)
            if not decision.replayed:
                try:
                    self._finish(j.sub, decision, j.now, j.mfacts, j.started, j.reserved)  # 5, 6
                except _RememberFailed as e:  # this message's call fails, the batch goes on
                    out[i] = CountersUnavailable(str(e))
                    continue
            out[i] = decision

    @staticmethod
    def _apply_charge(decision: Decision, res, account: Account, debit: str | None) -> None:
        decision.counters = list(res.values)
        if res.insufficient_balance:
            decision.balance = {"before": res.balance_after, "debit": None}
            decision.submit_result = BALANCE_CODE
            decision.submit_reason = "prepaid balance too low"
            decision.recipients = []
            return
        for index, (code, limit_id) in res.rejected.items():
            r = decision.recipients[index]
            r.action, r.code, r.rule_id = REJECT, code, limit_id
            r.reason = f"limit {limit_id} reached"
        if res.balance_after is not None:
            decision.balance_after = res.balance_after
        if debit:
            billed = sum(decision.recipients[i].segments for i in res.ok_indexes)
            decision.balance = {"before": (res.balance_after or 0) + billed * account.price,
                                "debit": billed * account.price}

    # ------------------------------------------------------------------ step 5
    def _log(self, sub: Submission, decision: Decision, now: float, mfacts: dict,
             reserved: bool = False) -> bool:
        """False when the log refused the record and the decision was failed closed."""
        if self.decision_log is None:
            return True
        record = {
            "decision_id": decision.decision_id,
            "ts": now,
            "request_id": sub.request_id,
            "frontend_id": sub.frontend_id,
            "account_id": sub.account_id,
            "src_id": sub.src_id,
            # normalized, so that `audit query --number` finds +86/0086 forms too
            "destinations": [normalize_number(d)[0] for d in sub.destinations],
            "content": mfacts.get("message__content", ""),
            "msg_fmt": sub.msg_fmt,
            "facts": self._logged_facts(decision.facts),
            "counters": [list(c) for c in decision.counters],
            "rules_version": decision.rules_version,
            "matches": [{"rule_id": m.rule_id, "code": m.code, "priority": m.priority,
                         "mode": m.mode, "recipient_index": m.recipient_index}
                        for m in decision.matches],
            "results": {
                "submit_result": decision.submit_result,
                "submit_rule_id": decision.submit_rule_id,
                "recipients": [{"destination": r.destination, "action": r.action, "code": r.code,
                                "rule_id": r.rule_id, "channel_id": r.channel_id}
                               for r in decision.recipients],
                "balance": decision.balance,
                "errors": decision.errors,
            },
        }
        if not self.decision_log.append(record, reserved):  # (full, and no slot reserved)
            self._fail_closed(decision, "decision log unavailable (log_overflow=fail_closed)")
            return False
        return True

    def _logged_facts(self, facts: dict) -> dict:
        """With content logging masked or hashed, the raw text must not reach the log through
        the facts either. Rules on message.content itself then replay against an absent fact
        (keyword, template and signature facts are kept, so most content rules still replay)."""
        if getattr(self.decision_log, "content_mode", "full") == "full":
            return facts
        message = {k: v for k, v in facts["message"].items() if k != "message__content"}
        return {**facts, "message": message}

    @staticmethod
    def _fail_closed(decision: Decision, reason: str) -> None:
        for r in decision.recipients:
            r.action, r.code, r.rule_id, r.channel_id, r.reason = REJECT, INTERNAL_ERROR, "", "", reason


@dataclass(slots=True)
class _Job:
    """A message of a batch stopped at step 4: its charge and what finishing it needs."""
    sub: Submission
    charges: list
    debit: str | None
    account: Account
    now: float
    answer: object
    decision: Decision
    mfacts: dict
    started: float
    reserved: bool   # a decision-log slot is held for it


class _RememberFailed(RuntimeError):
    """The answer of a decision the log refused could not be kept for retries."""


class _Deferred(Exception):
    def __init__(self, job: _Job):
        super().__init__()
        self.job = job


class CountersUnavailable(RuntimeError):
    """The counter store cannot answer; nothing may be sent unchecked."""
