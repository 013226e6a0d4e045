"""Replay of decision logs written by the daemon's own pipeline: exact under the recorded
versions, and what-if under a candidate folder."""
from __future__ import annotations

import csv
import json
import shutil
import sqlite3

import pytest

from policy.audit import query
from policy.engine.durable_engine import DurableRules
from policy.rules.loader import load_policy
from policy.tools.replay import (StageMatcher, compile_folder, differences, evaluate,
                                 recorded_outcome)
from policy.tools.replay_run import Slice, replay

from .conftest import SIGNATURE, Recorder, at, copy_rules, edit, smspolicy

LOANS = f"{SIGNATURE}贷款秒批，无抵押贷款"


def record_traffic(rec: Recorder) -> None:
    """A bit of everything the pipeline decides, under two rules versions."""
    rec.send("13800138000")                                          # accepted
    rec.send(["13900000001", "1380013800", "13800138000", "13400001234"])  # lists, number format
    rec.send("13800138000", text=LOANS)                              # shadow match only
    rec.send(["13900000001", "13800138000"], text=f"{SIGNATURE}贷款秒批，博彩")  # enforced + shadow
    rec.send("13800138000", text="没有签名的短信")                     # submit result 17
    rec.send("13800138000", account="900008")                        # held for audit
    rec.send(["13800138000", "13000000000"], account="900015")       # no route for CUCC
    for i in range(22):                                              # 21st and 22nd: MA:0022
        rec.send("13700001111", text=f"{SIGNATURE}您的验证码是{100000 + i}")
    for _ in range(3):                                               # 8 segments at 5 fen: the 3rd is result 15
        rec.send("13800138000", account="900002", fee_code="000010", text=SIGNATURE + "好" * 500)
    edit(rec.rules / "policy.yaml", "    mode: shadow\n", "    mode: enforce\n")
    outcome = rec.runtime.reload()
    assert outcome.ok, outcome.errors
    rec.send("13800138000", text=LOANS, when="2026-11-26T11:00:00+08:00")  # now refused
    rec.send(["13800138000", "13900000001"], when="2026-11-26T11:00:00+08:00")


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    """A log of the traffic above, its version store, and the first version's rules."""
    work = tmp_path_factory.mktemp("traffic")
    rules = copy_rules(work)
    original = work / "original-rules"
    shutil.copytree(rules, original)
    rec = Recorder(work, rules)
    try:
        record_traffic(rec)
    finally:
        rec.close()
    return work, original


def exact(log, versions, **kw):
    return replay(Slice((str(log),)), versions=str(versions), workers=1, progress=False, **kw)


def what_if(log, candidate, **filters):
    return replay(Slice((str(log),), **filters), candidate=str(candidate), workers=1, progress=False)


# the decisions made before the rules changed in record_traffic
FIRST_VERSION = {"until": at("2026-11-26T10:30:00+08:00")}


def test_exact_replay_reproduces_every_decision_under_its_own_version(traffic):
    work, _ = traffic
    report = exact(work / "decisions-d1.db", work / "versions.db")
    assert report.ok, report.mismatches
    assert report.decisions == 34 and report.reproduced == 34
    assert len(report.versions) == 2
    assert report.balance_carried == 1          # the third prepaid message
    codes = {c for r in query([str(work / "decisions-d1.db")]) for c in r["codes"].split()}
    assert {"MA:0001", "MA:0021", "MA:0028", "MA:0002", "17", "MA:0003", "MA:0022", "15"} <= codes


def test_the_memoized_matcher_answers_like_the_engine_on_recorded_facts(traffic):
    work, original = traffic
    policy = load_policy(original)
    rules = [r for r in policy.rules if r.stage == "recipient"]
    plain = DurableRules(rules, "plain-recipient")
    memo = StageMatcher(rules, "memo-recipient")
    compared = 0
    try:
        for record in list(query([str(work / "decisions-d1.db")])) * 2:   # the second pass hits the cache
            m = record["facts"]["message"]
            for r in record["facts"]["recipients"]:
                assert memo.match(m, r) == plain.match({**m, **r})
                compared += 1
    finally:
        plain.close()
        memo.close()
    assert compared > 60 and memo.calls < compared


def _tampered(work, tmp_path, sql: str):
    log = tmp_path / "decisions-d1.db"
    shutil.copy(work / "decisions-d1.db", log)
    with sqlite3.connect(log) as conn:
        assert conn.execute(sql).rowcount == 1
    return log


def test_an_edited_result_is_a_mismatch_naming_the_record(traffic, tmp_path):
    work, _ = traffic
    log = _tampered(work, tmp_path, "UPDATE decisions SET results = replace(results, '\"MA:0001\"', "
                                    "'\"MA:0023\"') WHERE seq = 2")
    proc = smspolicy("replay", log, "--versions", work / "versions.db", "--no-progress")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "MISMATCH: 1 decisions differ" in proc.stdout
    assert "seq 2 " in proc.stdout
    assert ("recipient 0: recorded reject MA:0023 by global-blacklist, "
            "replayed reject MA:0001 by global-blacklist") in proc.stdout


def test_an_edited_counter_value_is_a_mismatch(traffic, tmp_path):
    work, _ = traffic
    seq = next(r["seq"] for r in query([str(work / "decisions-d1.db")], code="MA:0022"))
    log = _tampered(work, tmp_path, f"UPDATE decisions SET counters = replace(counters, ',20,20,', ',19,20,') "
                                    f"WHERE seq = {seq}")
    report = exact(log, work / "versions.db")
    assert report.mismatched == 1
    problems = report.mismatches[0]["problems"]
    assert any(p.startswith("recipient 0: recorded reject MA:0022 by demo-number-hourly, replayed accept")
               for p in problems), problems
    assert any(p.startswith("counters: recorded") for p in problems), problems


def test_a_version_missing_from_the_store_is_an_error(traffic, tmp_path):
    work, _ = traffic
    from policy.audit import VersionStore
    VersionStore(str(tmp_path / "empty.db"))
    proc = smspolicy("replay", work / "decisions-d1.db", "--versions", tmp_path / "empty.db", "--no-progress")
    assert proc.returncode == 1
    assert "ERROR: 34 decisions name a rules version that cannot be loaded" in proc.stdout
    assert "is not in" in proc.stdout


def test_exact_replay_needs_a_version_store(traffic, tmp_path):
    work, _ = traffic
    proc = smspolicy("replay", work / "decisions-d1.db", "--versions", tmp_path / "nope.db")
    assert proc.returncode == 2 and "no version store" in proc.stderr


def test_what_if_counts_old_to_new_codes_by_rule_with_examples(traffic, tmp_path):
    work, original = traffic
    candidate = tmp_path / "candidate"
    shutil.copytree(original, candidate)
    edit(candidate / "policy.yaml", "    mode: shadow\n", "    mode: enforce\n")
    report = what_if(work / "decisions-d1.db", candidate)
    # before the reload the loan rule was shadow: one accepted loan message changes; the other
    # loan message already had a higher enforced rule (illegal-content), which keeps deciding
    assert dict(report.transitions) == {"accept -> MA:0002": 1}
    assert report.gained == {"trial-loan-ads": 1} and not report.lost
    assert report.shadow_recorded["trial-loan-ads"] == 3 and report.shadow_candidate["trial-loan-ads"] == 0
    example = report.examples["accept -> MA:0002"][0]
    assert example["destination"] == "13800138000" and example["new_rule"] == "trial-loan-ads"


def test_what_if_writes_the_full_diff_as_csv_and_json(traffic, tmp_path):
    work, original = traffic
    candidate = tmp_path / "candidate"
    shutil.copytree(original, candidate)
    edit(candidate / "policy.yaml", "    mode: shadow\n", "    mode: enforce\n")
    out = tmp_path / "diff.csv"
    proc = smspolicy("replay", work / "decisions-d1.db", "--rules", candidate, "--csv", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "accept -> MA:0002" in proc.stdout and "trial-loan-ads" in proc.stdout
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    changed = [r for r in rows if r["change"] == "decision"]
    assert [(r["old"], r["new"], r["new_rule"]) for r in changed] == [("accept", "MA:0002", "trial-loan-ads")]
    # a shadow rule that became enforced also leaves the shadow list of the recipients it matched
    assert {r["change"] for r in rows} == {"decision", "shadow"}
    out_json = tmp_path / "diff.json"
    proc = smspolicy("replay", work / "decisions-d1.db", "--rules", candidate, "--json", out_json, "--no-progress")
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    assert doc["summary"]["transitions"] == {"accept -> MA:0002": 1}
    assert len(doc["rows"]) == len(rows)


def test_a_lower_limit_is_checked_against_the_recorded_counter_values(traffic, tmp_path):
    work, original = traffic
    candidate = tmp_path / "candidate"
    shutil.copytree(original, candidate)
    edit(candidate / "limits.yaml", "    max: 20\n", "    max: 10\n")
    report = what_if(work / "decisions-d1.db", candidate, **FIRST_VERSION)
    # 22 messages to one number: the recorded values before them are 0..21; with max 10 the
    # 11th to 20th are refused too (the 21st and 22nd were refused already)
    assert report.transitions["accept -> MA:0022"] == 10
    assert report.unrecorded_reads == 0


def test_a_new_limit_has_no_recorded_values_and_says_so(traffic, tmp_path):
    work, original = traffic
    candidate = tmp_path / "candidate"
    shutil.copytree(original, candidate)
    with open(candidate / "limits.yaml", "a", encoding="utf-8") as fh:
        fh.write("\n  - id: new-per-number\n    scope: account_number\n    max: 1\n    window: day\n")
    report = what_if(work / "decisions-d1.db", candidate, **FIRST_VERSION)
    assert report.unrecorded_reads > 0
    assert "counted as 0" in __import__("policy.tools.replay_report", fromlist=["x"]).render_diff(report)


def test_a_submit_refusal_lifted_by_the_candidate_is_not_comparable(traffic, tmp_path):
    work, original = traffic
    candidate = tmp_path / "candidate"
    shutil.copytree(original, candidate)
    edit(candidate / "policy.yaml", "  - id: submit-signature-not-registered\n    stage: submit\n",
         "  - id: submit-signature-not-registered\n    stage: submit\n    mode: shadow\n")
    report = what_if(work / "decisions-d1.db", candidate, **FIRST_VERSION)
    assert report.not_comparable == {
        "recipient facts not recorded (the message was refused at submit level)": 1}
    assert report.shadow_candidate["submit-signature-not-registered"] == 1
    assert report.changed == 0


def test_a_recipient_that_failed_inside_the_daemon_is_carried_over(tmp_path, monkeypatch):
    rec = Recorder(tmp_path, copy_rules(tmp_path))
    facts = rec.runtime.current().facts
    real = facts.recipient_part  # what the pipeline calls per recipient

    def flaky(mfacts, raw, account):
        if raw == "13800000011":
            raise RuntimeError("lookup failed")
        return real(mfacts, raw, account)

    monkeypatch.setattr(facts, "recipient_part", flaky)
    decision = rec.send(["13900000001", "13800000011", "13800138000"])
    rec.close()
    assert [r.code for r in decision.recipients] == ["MA:0001", "MA:0011", ""]
    report = exact(rec.log_path, rec.versions_path)
    assert report.ok and report.internal_failures == 1
    diff = what_if(rec.log_path, rec.rules)
    assert diff.changed == 0 and diff.internal_failures == 1
    # the log keeps a placeholder in the failed recipient's place, and says what failed
    (record,) = query([str(rec.log_path)])
    assert record["facts"]["recipients"][1] is None and len(record["facts"]["recipients"]) == 3
    assert record["results"]["errors"] == ["recipient 1: internal error"]
    rules = compile_folder(str(rec.rules), "placeholder")
    try:
        assert differences(recorded_outcome(record), evaluate(record, rules)) == []
    finally:
        rules.close()


def test_two_workers_report_what_one_does_and_show_progress(traffic, tmp_path):
    work, _ = traffic
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    args = ["replay", work / "decisions-d1.db", "--versions", work / "versions.db"]
    first = smspolicy(*args, "--workers", "1", "--json", one)
    second = smspolicy(*args, "--workers", "2", "--json", two)
    assert first.returncode == second.returncode == 0, second.stderr
    assert "2 worker(s)" in second.stdout
    a, b = (json.loads(p.read_text())["summary"] for p in (one, two))
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert "decisions" in second.stderr   # the progress bar


def test_an_invalid_candidate_is_refused_with_its_problems(traffic, tmp_path):
    work, original = traffic
    candidate = tmp_path / "candidate"
    shutil.copytree(original, candidate)
    edit(candidate / "policy.yaml", "{fact: recipient.valid, eq: false}", "{fact: recipient.validd, eq: false}")
    proc = smspolicy("replay", work / "decisions-d1.db", "--rules", candidate, "--workers", "2")
    assert proc.returncode == 2
    assert "policy.yaml:" in proc.stderr and "recipient.validd" in proc.stderr
    assert "the candidate rules in" in proc.stderr and "Traceback" not in proc.stderr
