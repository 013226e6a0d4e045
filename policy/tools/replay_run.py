"""Replaying a slice of decision logs, exactly or under a candidate, and what it found.

Exact: every decision is re-evaluated under the rules version that made it (from the version
store) and must come out identical: submit result, every recipient's action, code, rule and
channel, every match (shadow ones included) and every counter value read. A difference is a
mismatch, listed. What-if: every decision is evaluated under a candidate rules folder and
compared with what was recorded; the report counts old code -> new code, by rule, with examples.

Long slices are split by time between worker processes (each reads its own part of the logs,
so records are decoded where they are evaluated); a progress bar on stderr counts decisions.
"""
from __future__ import annotations

import gc
import json
import multiprocessing
import os
import queue
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone

from ..audit.files import expand, open_readonly
from ..audit.query import query
from ..rules.loader import load_policy
from .replay import (CACHE_SIZE, CompiledRules, Outcome, VersionCache, compile_folder,
                     differences, evaluate, format_verdict, recorded_outcome, verdict_label)

TICK = 2000                 # decisions between two progress reports of a worker
MAX_LISTED = 50             # mismatches kept in memory for the text report
EXAMPLES_PER_CHANGE = 3
PARALLEL_FROM = 20_000      # decisions; fewer are not worth a second process


@dataclass(frozen=True)
class Slice:
    """Which decisions to replay: the logs and the filters of `smspolicy audit query`."""
    logs: tuple[str, ...]
    since: float | None = None
    until: float | None = None
    account: str | None = None
    number: str | None = None
    code: str | None = None
    rule: str | None = None
    version: str | None = None
    shadow_only: bool = False
    limit: int | None = None

    @property
    def time_only(self) -> bool:
        """Only time filters: the slice's size is known from the timestamps alone."""
        return not any((self.account, self.number, self.code, self.rule, self.version,
                        self.shadow_only, self.limit))

    def records(self):
        return query(list(self.logs), account=self.account, number=self.number, code=self.code,
                     rule=self.rule, since=self.since, until=self.until, version=self.version,
                     shadow_only=self.shadow_only, limit=self.limit)


# ----------------------------------------------------------------------------- reports
def _merge(into, other) -> None:
    for f in fields(into):
        a, b = getattr(into, f.name), getattr(other, f.name)
        if isinstance(a, bool) or isinstance(a, str):
            continue
        if isinstance(a, (int, float)):
            setattr(into, f.name, a + b)
        elif isinstance(a, Counter):
            a.update(b)
        elif isinstance(a, list):
            a.extend(b[:max(0, MAX_LISTED - len(a))])
        elif isinstance(a, dict):
            for k, v in b.items():
                have = a.setdefault(k, [])
                have.extend(v[:max(0, EXAMPLES_PER_CHANGE - len(have))])


@dataclass
class ExactReport:
    decisions: int = 0
    recipients: int = 0
    reproduced: int = 0
    mismatched: int = 0
    unloadable: int = 0                  # decisions whose rules version could not be loaded
    internal_failures: int = 0           # MA:0011 recipients carried over
    balance_carried: int = 0
    versions: Counter = field(default_factory=Counter)
    shadow: Counter = field(default_factory=Counter)       # shadow rule -> recorded matches
    mismatches: list[dict] = field(default_factory=list)   # the first MAX_LISTED
    engine_calls: int = 0
    lookups: int = 0
    seconds: float = 0.0
    workers: int = 1

    @property
    def ok(self) -> bool:
        return self.mismatched == 0 and self.unloadable == 0

    def merge(self, other: ExactReport) -> None:
        _merge(self, other)


@dataclass
class DiffReport:
    candidate: str = ""
    candidate_version: str = ""
    decisions: int = 0
    recipients: int = 0
    changed: int = 0                     # recipients whose decision changed
    changed_decisions: int = 0
    transitions: Counter = field(default_factory=Counter)   # (old label, new label) -> recipients
    gained: Counter = field(default_factory=Counter)        # rule -> recipients it now decides
    lost: Counter = field(default_factory=Counter)          # rule -> recipients it no longer decides
    examples: dict = field(default_factory=dict)            # "old -> new" -> example rows
    shadow_recorded: Counter = field(default_factory=Counter)  # shadow rule -> matches
    shadow_candidate: Counter = field(default_factory=Counter)
    not_comparable: Counter = field(default_factory=Counter)   # reason -> recipients
    internal_failures: int = 0
    balance_carried: int = 0
    unrecorded_reads: int = 0            # counter reads without a recorded value (taken as 0)
    engine_calls: int = 0
    lookups: int = 0
    seconds: float = 0.0
    workers: int = 1

    def merge(self, other: DiffReport) -> None:
        _merge(self, other)


# ----------------------------------------------------------------------------- one worker
@dataclass(frozen=True)
class Job:
    slice: Slice
    versions: str | None = None       # exact: the version store
    candidate: str | None = None      # what-if: the candidate rules folder
    rows_path: str | None = None      # JSON lines of mismatches / changes, when asked for
    cache_size: int = CACHE_SIZE


def run_job(job: Job, tick=None):
    """Replay one slice in this process; `tick(n)` is told about progress."""
    started = time.perf_counter()
    rows = open(job.rows_path, "w", encoding="utf-8") if job.rows_path else None
    # Decoded records and outcomes hold no reference cycles; the cyclic collector would only
    # keep walking the memo caches (measured: 3-8% of a long replay).
    collecting = gc.isenabled()
    gc.disable()
    try:
        if job.candidate is not None:
            report = _what_if(job, rows, tick)
        else:
            report = _exact(job, rows, tick)
    finally:
        if collecting:
            gc.enable()
        if rows:
            rows.close()
    report.seconds = time.perf_counter() - started
    return report


def _exact(job: Job, rows, tick) -> ExactReport:
    from ..audit.versions import VersionStore
    report = ExactReport()
    cache = VersionCache(VersionStore(job.versions), job.cache_size)
    try:
        pending = 0
        for record in job.slice.records():
            report.decisions += 1
            report.recipients += len(record.get("destinations") or ())
            version = record.get("rules_version") or ""
            report.versions[version] += 1
            try:
                rules = cache.get(version)
            except KeyError as e:
                report.unloadable += 1
                _mismatch(report, rows, record, [e.args[0]])
            else:
                replayed = evaluate(record, rules)
                recorded = recorded_outcome(record)
                report.shadow.update(m[0] for m in recorded.matches if m[3] == "shadow")
                problems = differences(recorded, replayed)
                if problems:
                    report.mismatched += 1
                    _mismatch(report, rows, record, problems)
                else:
                    report.reproduced += 1
                report.internal_failures += replayed.internal_failures
                report.balance_carried += replayed.balance_carried
            pending += 1
            if tick and pending == TICK:
                tick(pending)
                pending = 0
        if tick and pending:
            tick(pending)
        for rules in cache.loaded:
            _count_engine(report, rules)
    finally:
        cache.close()
    return report


def _mismatch(report: ExactReport, rows, record: dict, problems: list[str]) -> None:
    row = {"seq": record.get("seq"), "decision_id": record.get("decision_id"),
           "time": _iso(record.get("ts")), "account_id": record.get("account_id"),
           "rules_version": record.get("rules_version"), "problems": problems}
    if len(report.mismatches) < MAX_LISTED:
        report.mismatches.append(row)
    if rows:
        rows.write(json.dumps(row, ensure_ascii=False) + "\n")


def _what_if(job: Job, rows, tick) -> DiffReport:
    rules = compile_folder(job.candidate, "candidate", job.cache_size)
    report = DiffReport(candidate=job.candidate, candidate_version=rules.version)
    try:
        pending = 0
        for record in job.slice.records():
            old = recorded_outcome(record)
            new = evaluate(record, rules)
            _compare(report, rows, record, old, new, rules)
            pending += 1
            if tick and pending == TICK:
                tick(pending)
                pending = 0
        if tick and pending:
            tick(pending)
        _count_engine(report, rules)
    finally:
        rules.close()
    return report


def _compare(report: DiffReport, rows, record: dict, old: Outcome, new: Outcome,
             rules: CompiledRules) -> None:
    destinations = record.get("destinations") or []
    report.decisions += 1
    report.recipients += len(destinations)
    report.internal_failures += new.internal_failures
    report.balance_carried += new.balance_carried
    report.unrecorded_reads += len(new.unrecorded_counters)
    report.shadow_recorded.update(old.submit_shadow)
    report.shadow_candidate.update(new.submit_shadow)
    changed_here = False
    for i, destination in enumerate(destinations):
        before = _at(old.recipients, i)
        after = _at(new.recipients, i)
        old_label = verdict_label(before, old.submit_result)
        new_label = verdict_label(after, new.submit_result)
        old_rule = old.submit_rule_id if old.submit_result else (before[2] if before else "")
        new_rule = new.submit_rule_id if new.submit_result else (after[2] if after else "")
        old_shadow = _at(old.shadow, i) or []
        new_shadow = _at(new.shadow, i) or []
        report.shadow_recorded.update(old_shadow)
        report.shadow_candidate.update(new_shadow)
        if new_label == "?":
            kind = "not comparable"
            report.not_comparable[new.not_evaluated] += 1
        elif (old_label, old_rule) != (new_label, new_rule):
            kind = "decision"
            changed_here = True
            report.changed += 1
            transition = f"{old_label} -> {new_label}"
            report.transitions[transition] += 1
            if old_rule:
                report.lost[old_rule] += 1
            if new_rule:
                report.gained[new_rule] += 1
        elif sorted(old_shadow) != sorted(new_shadow):
            kind = "shadow"
        else:
            continue
        row = {
            "seq": record.get("seq"), "decision_id": record.get("decision_id"),
            "time": _iso(record.get("ts")), "account_id": record.get("account_id"),
            "recipient_index": i, "destination": destination, "change": kind,
            "old": old_label, "old_rule": old_rule, "old_decision": format_verdict(before) if before else old_label,
            "new": new_label, "new_rule": new_rule, "new_decision": format_verdict(after) if after else new_label,
            "old_shadow": old_shadow, "new_shadow": new_shadow,
            "note": new.not_evaluated if kind == "not comparable" else "",
            "content": _short(record.get("content")),
        }
        if kind == "decision":
            examples = report.examples.setdefault(f"{old_label} -> {new_label}", [])
            if len(examples) < EXAMPLES_PER_CHANGE:
                examples.append(row)
        if rows:
            rows.write(json.dumps(row, ensure_ascii=False) + "\n")
    report.changed_decisions += changed_here


def _count_engine(report, rules: CompiledRules) -> None:
    for stage in (rules.submit, rules.recipient):
        report.engine_calls += stage.calls
        report.lookups += stage.lookups


def _at(items: list, i: int):
    return items[i] if i < len(items) else None


def _short(text, width: int = 40) -> str:
    text = text or ""
    return text if len(text) <= width else text[:width - 1] + "…"


def _iso(ts) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).astimezone().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- several workers
def replay(slice_: Slice, *, versions: str | None = None, candidate: str | None = None,
           workers: int | None = None, progress: bool = True, rows_path: str | None = None,
           cache_size: int = CACHE_SIZE):
    """Replay `slice_` exactly (`versions`: the version store) or under `candidate` (a rules
    folder). Returns an ExactReport or DiffReport; `rows_path` receives every mismatch or change
    as JSON lines."""
    if (versions is None) == (candidate is None):
        raise ValueError("give either a version store (exact replay) or a candidate rules folder")
    if candidate is not None:
        load_policy(candidate)   # PolicyError here, not from inside a worker
    started = time.perf_counter()
    if slice_.limit is not None:
        workers = 1   # a limit counts across the whole slice
    # the decisions' times split the work between workers and size the progress bar
    stamps = _timestamps(slice_) if workers != 1 or slice_.time_only else []
    total = len(stamps) if slice_.time_only else None
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(stamps) >= PARALLEL_FROM else 1
    base = Job(slice_, versions, candidate, None, cache_size)
    with tempfile.TemporaryDirectory(prefix="smspolicy-replay-rows-") as tmp:
        jobs = [replace(base, slice=part, rows_path=os.path.join(tmp, f"{i}.jsonl") if rows_path else None)
                for i, part in enumerate(_split(slice_, stamps, workers))]
        bar = None
        try:
            if len(jobs) == 1:
                bar = _bar(total, progress)
                reports = [run_job(jobs[0], bar.update)]
            else:
                reports = _in_processes(jobs, lambda: _bar(total, progress))
        finally:
            if bar is not None:
                bar.close()
        report = reports[0]
        for other in reports[1:]:
            report.merge(other)
        if rows_path:
            _concat([j.rows_path for j in jobs], rows_path)
    report.seconds = time.perf_counter() - started
    report.workers = len(jobs)
    return report


def _bar(total, progress):
    from tqdm import tqdm
    return tqdm(total=total, unit=" decisions", file=sys.stderr, disable=not progress,
                dynamic_ncols=True, mininterval=0.5)


def _timestamps(slice_: Slice) -> list[float]:
    """The times of the decisions in the slice's time range, sorted (cheap: the ts index)."""
    where, params = [], []
    if slice_.since is not None:
        where.append("ts >= ?")
        params.append(float(slice_.since))
    if slice_.until is not None:
        where.append("ts < ?")
        params.append(float(slice_.until))
    sql = "SELECT ts FROM decisions" + (" WHERE " + " AND ".join(where) if where else "")
    out: list[float] = []
    for path in expand(list(slice_.logs)):
        conn = open_readonly(path)
        try:
            out.extend(row[0] for row in conn.execute(sql, params))
        finally:
            conn.close()
    out.sort()
    return out


def _split(slice_: Slice, stamps: list[float], parts: int) -> list[Slice]:
    """`parts` consecutive time ranges holding about as many decisions each."""
    if parts <= 1 or len(stamps) < parts:
        return [slice_]
    cuts = [stamps[len(stamps) * k // parts] for k in range(1, parts)]
    bounds = [slice_.since, *cuts, slice_.until]
    return [replace(slice_, since=bounds[k], until=bounds[k + 1]) for k in range(parts)]


def _worker(job: Job, messages, index: int) -> None:
    try:
        report = run_job(job, lambda n: messages.put(("tick", index, n)))
        messages.put(("done", index, report))
    except BaseException:  # noqa: BLE001 - the parent reports it
        messages.put(("error", index, traceback.format_exc()))


def _in_processes(jobs: list[Job], make_bar) -> list:
    # spawn, not fork: the caller may hold threads or gRPC state that a fork would copy half-way
    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, messages, i), daemon=True)
             for i, job in enumerate(jobs)]
    for p in procs:
        p.start()
    bar = make_bar()
    reports: list = [None] * len(jobs)
    try:
        while any(r is None for r in reports):
            try:
                kind, index, payload = messages.get(timeout=1.0)
            except queue.Empty:
                dead = [i for i, p in enumerate(procs) if not p.is_alive() and reports[i] is None]
                if dead and messages.empty():
                    raise RuntimeError(f"replay worker {dead[0]} died (exit code {procs[dead[0]].exitcode})")
                continue
            if kind == "tick":
                bar.update(payload)
            elif kind == "done":
                reports[index] = payload
            else:
                raise RuntimeError(f"replay worker {index} failed:\n{payload}")
    finally:
        bar.close()
        for p in procs:
            if p.is_alive() and any(r is None for r in reports):
                p.terminate()
            p.join()
    return reports


def _concat(parts: list[str], dest: str) -> None:
    with open(dest, "w", encoding="utf-8") as out:
        for part in parts:
            with open(part, encoding="utf-8") as fh:
                for line in fh:
                    out.write(line)
