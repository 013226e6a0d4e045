"""What a replay found, as text for the terminal and as CSV or JSON files."""
from __future__ import annotations

import csv
import json

from .replay_run import DiffReport, ExactReport

EXACT_COLUMNS = ("seq", "decision_id", "time", "account_id", "rules_version", "problems")
DIFF_COLUMNS = ("seq", "decision_id", "time", "account_id", "recipient_index", "destination",
                "change", "old", "new", "old_rule", "new_rule", "old_decision", "new_decision",
                "old_shadow", "new_shadow", "note", "content")


def _n(x: int) -> str:
    return f"{x:,}"


def _rate(decisions: int, seconds: float) -> str:
    return f"{decisions / seconds:,.0f} decisions/s" if seconds > 0 else "-"


def render_exact(r: ExactReport) -> str:
    versions = len(r.versions)
    out = [f"exact replay: {_n(r.decisions)} decisions ({_n(r.recipients)} recipients) under "
           f"{versions} rules version{'s' if versions != 1 else ''}, {r.workers} worker(s), "
           f"{r.seconds:.1f} s ({_rate(r.decisions, r.seconds)})"]
    share = 100.0 * r.reproduced / r.decisions if r.decisions else 100.0
    out.append(f"reproduced: {_n(r.reproduced)} of {_n(r.decisions)} ({share:.2f}%)")
    carried = []
    if r.internal_failures:
        carried.append(f"{_n(r.internal_failures)} recipients that failed inside the daemon (MA:0011)")
    if r.balance_carried:
        carried.append(f"{_n(r.balance_carried)} prepaid-balance refusals (result 15; balances are not recorded)")
    if carried:
        out.append("carried over from the record: " + ", ".join(carried))
    if r.shadow:
        out.append("shadow rules (recorded and reproduced, never enforced): "
                   + ", ".join(f"{rule} {_n(n)}" for rule, n in r.shadow.most_common()))
    if r.lookups:
        out.append(f"rules engine: {_n(r.engine_calls)} calls for {_n(r.lookups)} stage evaluations "
                   "(the rest repeated facts already evaluated)")
    if r.unloadable:
        out.append(f"ERROR: {_n(r.unloadable)} decisions name a rules version that cannot be loaded")
    if r.mismatched:
        out.append(f"MISMATCH: {_n(r.mismatched)} decisions differ from the record")
    for m in r.mismatches:
        out.append(f"  seq {m['seq']}  {m['time']}  account {m['account_id']}  version {m['rules_version']}  "
                   f"decision {m['decision_id']}")
        out += [f"      {p}" for p in m["problems"]]
    listed = r.mismatched + r.unloadable
    if listed > len(r.mismatches):
        out.append(f"  ... {_n(listed - len(r.mismatches))} more (write them all with --csv or --json)")
    if r.ok:
        out.append("OK: every decision reproduced exactly")
    return "\n".join(out) + "\n"


def render_diff(r: DiffReport) -> str:
    out = [f"what-if replay: {_n(r.decisions)} decisions ({_n(r.recipients)} recipients) under "
           f"{r.candidate} (version {r.candidate_version}), {r.workers} worker(s), {r.seconds:.1f} s "
           f"({_rate(r.decisions, r.seconds)})"]
    share = 100.0 * r.changed / r.recipients if r.recipients else 0.0
    out.append(f"changed: {_n(r.changed)} recipients ({share:.2f}%) in {_n(r.changed_decisions)} decisions")
    if r.transitions:
        out += ["", _row("old -> new", "recipients")]
        for transition, count in r.transitions.most_common():
            out.append(_row(transition, _n(count)))
        out += ["", _row("by rule", "now decides", "no longer decides")]
        for rule in sorted(set(r.gained) | set(r.lost), key=lambda x: -(r.gained[x] + r.lost[x])):
            out.append(_row(rule, _n(r.gained[rule]), _n(r.lost[rule])))
        out += ["", "examples"]
        for transition, count in r.transitions.most_common():
            out.append(f"  {transition}")
            for e in r.examples.get(transition, []):
                out.append(f"    seq {e['seq']}  {e['time']}  account {e['account_id']}  {e['destination']}  "
                           f"{e['old_decision']} => {e['new_decision']}  {e['content']!r}")
    shadow = sorted(set(r.shadow_recorded) | set(r.shadow_candidate))
    if shadow:
        out += ["", _row("shadow rules (never enforced)", "recorded", "candidate")]
        for rule in shadow:
            out.append(_row(rule, _n(r.shadow_recorded[rule]), _n(r.shadow_candidate[rule])))
    notes = []
    for reason, count in r.not_comparable.most_common():
        notes.append(f"not comparable: {_n(count)} recipients: {reason}")
    if r.internal_failures:
        notes.append(f"carried over: {_n(r.internal_failures)} recipients that failed inside the daemon (MA:0011)")
    if r.balance_carried:
        notes.append(f"carried over: {_n(r.balance_carried)} prepaid-balance refusals (result 15; balances "
                     "are not recorded)")
    if r.unrecorded_reads:
        notes.append(f"{_n(r.unrecorded_reads)} counter reads had no recorded value (a new limit, a changed "
                     "window, or a recipient refused before its limits were read) and counted as 0, "
                     "so limit refusals may be undercounted")
    if notes:
        out += [""] + notes
    out += ["", "replay uses the recorded facts: changes of accounts, lists, keywords, templates or "
                "channels in the candidate are not reflected, only its rules and limits"]
    return "\n".join(out) + "\n"


def _row(first: str, *rest: str) -> str:
    return f"  {first:<40}" + "".join(f"{x:>20}" for x in rest)


def write_rows(jsonl_path: str, dest: str, fmt: str, report) -> int:
    """Convert the replay's JSON lines to `dest` as csv or json; returns the row count."""
    columns = EXACT_COLUMNS if isinstance(report, ExactReport) else DIFF_COLUMNS
    count = 0
    with open(jsonl_path, encoding="utf-8") as src, open(dest, "w", encoding="utf-8", newline="") as out:
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            for line in src:
                row = json.loads(line)
                writer.writerow({k: _cell(row.get(k)) for k in columns})
                count += 1
        else:
            out.write('{"summary": ' + json.dumps(_summary(report), ensure_ascii=False) + ',\n "rows": [')
            for line in src:
                out.write(("\n  " if count == 0 else ",\n  ") + line.rstrip("\n"))
                count += 1
            out.write("\n ]}\n")
    return count


def _cell(value):
    return "; ".join(map(str, value)) if isinstance(value, list) else value


def _summary(report) -> dict:
    if isinstance(report, ExactReport):
        return {"mode": "exact", "decisions": report.decisions, "recipients": report.recipients,
                "reproduced": report.reproduced, "mismatched": report.mismatched,
                "unloadable": report.unloadable, "internal_failures": report.internal_failures,
                "balance_carried": report.balance_carried, "versions": dict(report.versions),
                "shadow": dict(report.shadow),
                "seconds": round(report.seconds, 3)}
    return {"mode": "what-if", "candidate": report.candidate, "candidate_version": report.candidate_version,
            "decisions": report.decisions, "recipients": report.recipients, "changed": report.changed,
            "changed_decisions": report.changed_decisions,
            "transitions": dict(report.transitions), "gained": dict(report.gained), "lost": dict(report.lost),
            "shadow_recorded": dict(report.shadow_recorded), "shadow_candidate": dict(report.shadow_candidate),
            "not_comparable": dict(report.not_comparable), "internal_failures": report.internal_failures,
            "balance_carried": report.balance_carried, "unrecorded_reads": report.unrecorded_reads,
            "seconds": round(report.seconds, 3)}
