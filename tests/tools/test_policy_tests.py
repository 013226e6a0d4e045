"""`smspolicy test`: YAML suites, their errors, the diff on failure, coverage and JUnit XML."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from policy.tools.suites import SuiteError, load_suite, run_suites

from .conftest import ROOT, copy_rules, smspolicy

HEADER = """
defaults:
  at: "2026-11-26T10:00:00+08:00"
  account: "900001"
  src_id: "106900001"
  text: "【云信科技】您的验证码是123456"
cases:
"""


def write_suite(folder, name, body, header=HEADER):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(header + body, encoding="utf-8")
    return path


def test_the_shipped_rules_pass_their_suites_and_every_rule_and_limit_is_exercised():
    report = run_suites(str(ROOT / "rules"))
    assert report.ok, [r.diff or r.error for r in report.results if not r.ok] + report.load_errors
    assert len(report.results) >= 70
    assert report.uncovered_rules == [] and report.uncovered_limits == []
    assert len(report.rules) == 32 and len(report.limits) == 6


def test_the_test_command_on_the_shipped_rules(tmp_path):
    junit = tmp_path / "junit.xml"
    proc = smspolicy("test", "rules", "--strict", "--junit", junit)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed, 0 errors" in proc.stdout
    assert "coverage: 32/32 rules, 6/6 limits exercised" in proc.stdout
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "0" and root.get("errors") == "0"
    coverage = root.find("testsuite[@name='coverage']")
    assert len(coverage) == 38 and coverage.find(".//skipped") is None


@pytest.fixture
def rules(tmp_path):
    return copy_rules(tmp_path)


def test_a_failing_case_shows_expected_and_got(rules):
    write_suite(rules / "tests", "one.yaml", """
  - name: wrong expectation
    to: ["13900000001"]
    expect:
      recipients: [{action: accept}]
  - name: right expectation
    to: ["13900000001"]
    expect:
      recipients: [{code: "MA:0001", rule: global-blacklist}]
""")
    proc = smspolicy("test", rules)
    assert proc.returncode == 1
    assert "FAIL  wrong expectation  (" in proc.stdout and "one.yaml:9)" in proc.stdout
    assert "- recipients[0] 13900000001: accept rule=-" in proc.stdout
    assert "+ recipients[0] 13900000001: reject MA:0001 rule=global-blacklist channel=ch-cmcc" in proc.stdout
    assert "ok    right expectation" in proc.stdout
    assert "2 cases in 1 suites: 1 passed, 1 failed, 0 errors" in proc.stdout


def test_a_submit_level_mismatch_is_shown_as_such(rules):
    write_suite(rules / "tests", "one.yaml", """
  - name: expects a refusal that does not come
    to: ["13800138000"]
    expect: {submit_result: 17, submit_rule: submit-signature-not-registered}
""")
    report = run_suites(str(rules))
    assert report.results[0].diff == [
        "- submit: 17 rule=submit-signature-not-registered",
        "+ submit: 0 (accepted for per-recipient decisions)"]


def test_rules_and_limits_no_case_exercises_are_listed_and_fail_with_strict(rules, tmp_path):
    write_suite(rules / "tests", "one.yaml", """
  - name: only the global blacklist
    to: ["13900000001"]
    expect:
      recipients: [{code: "MA:0001", rule: global-blacklist}]
""")
    report = run_suites(str(rules))
    assert report.ok
    assert "global-blacklist" not in report.uncovered_rules
    assert "number-length" in report.uncovered_rules and "channel-volume" in report.uncovered_limits
    proc = smspolicy("test", rules)
    assert proc.returncode == 0
    assert "warning: no test exercises rule(s): submit-recipient-count," in proc.stdout
    assert "warning: no test makes limit(s) refuse a recipient: demo-number-hourly," in proc.stdout
    junit = tmp_path / "j.xml"
    strict = smspolicy("test", rules, "--strict", "--junit", junit)
    assert strict.returncode == 1 and "error: no test exercises rule(s)" in strict.stdout
    coverage = ET.parse(junit).getroot().find("testsuite[@name='coverage']")
    failed = {tc.get("name") for tc in coverage if tc.find("failure") is not None}
    assert "number-length" in failed and "global-blacklist" not in failed


def test_counter_state_is_set_before_the_case_and_cleared_after(rules):
    write_suite(rules / "tests", "one.yaml", """
  - name: full
    to: ["13800138000"]
    counters: [{limit: demo-number-hourly, value: 20}]
    expect:
      recipients: [{code: "MA:0022", rule: demo-number-hourly}]
  - name: the next case starts from empty counters
    to: ["13800138000"]
    expect:
      recipients: [{action: accept}]
""")
    report = run_suites(str(rules))
    assert report.ok, [r.diff for r in report.results]
    assert "demo-number-hourly" in report.exercised


def test_the_api_blacklist_holds_the_numbers_only_during_the_case(rules):
    write_suite(rules / "tests", "one.yaml", """
  - name: listed
    to: ["13800138001"]
    api_blacklist: ["13800138001"]
    expect:
      recipients: [{code: "MA:0039", rule: api-blacklist}]
  - name: not listed any more
    to: ["13800138001"]
    expect:
      recipients: [{action: accept}]
""")
    assert run_suites(str(rules)).ok


def test_cases_read_the_frozen_time_in_the_platform_zone(rules):
    write_suite(rules / "tests", "one.yaml", """
  - name: 21:30 in Shanghai is outside 08:00-20:00
    account: "900013"
    src_id: "106900013"
    at: 2026-11-26T13:30:00Z
    to: ["13800138000"]
    expect: {submit_result: 16}
""")
    assert run_suites(str(rules)).ok


@pytest.mark.parametrize("body,message", [
    ("  - name: x\n    tp: ['1']\n    expect: {}\n", "unknown key 'tp' in a case (did you mean 'to'?)"),
    ("  - name: x\n    to: ['1']\n", "case 'x': `expect` is missing"),
    ("  - name: x\n    to: ['1']\n    at: '2026-11-26T10:00:00'\n    expect: {recipients: [{}]}\n",
     "has no UTC offset"),
    ("  - name: x\n    to: ['1', '2']\n    expect: {recipients: [{}]}\n",
     "expect.recipients has 1 entries for 2 destination(s)"),
    ("  - name: x\n    to: ['1']\n    msg_fmt: 0\n    expect: {recipients: [{}]}\n",
     "cannot be written in msg_fmt 0 (ascii); use `hex`"),
    ("  - name: x\n    to: ['1']\n    hex: zz\n    text: ''\n    expect: {}\n", "give `text` or `hex`, not both"),
    ("  - name: x\n    to: ['1']\n    expect: {recipients: [{action: drop}]}\n",
     "action must be one of accept, reject, hold"),
    ("  - name: x\n    to: ['1']\n    expect: {recipients: [{}]}\n  - name: x\n    to: ['1']\n"
     "    expect: {recipients: [{}]}\n", "case name 'x' is already used at line 8"),
])
def test_suite_mistakes_are_refused_with_file_and_line(tmp_path, body, message):
    path = write_suite(tmp_path, "bad.yaml", body)
    with pytest.raises(SuiteError) as e:
        load_suite(str(path))
    assert str(e.value).startswith(f"{path}:")
    assert message in str(e.value)


def test_a_broken_suite_file_is_an_error_and_the_others_still_run(rules):
    write_suite(rules / "tests", "a.yaml", "  - name: [unclosed\n")
    write_suite(rules / "tests", "b.yaml", """
  - name: fine
    to: ["13800138000"]
    expect:
      recipients: [{action: accept}]
""")
    proc = smspolicy("test", rules)
    assert proc.returncode == 1
    assert "ERROR " in proc.stdout and "a.yaml:" in proc.stdout and "YAML syntax error" in proc.stdout
    assert "ok    fine" in proc.stdout


def test_an_unknown_limit_in_counter_state_is_a_case_error(rules):
    write_suite(rules / "tests", "one.yaml", """
  - name: typo
    to: ["13800138000"]
    counters: [{limit: demo-number-hourlyy, value: 3}]
    expect:
      recipients: [{action: accept}]
""")
    report = run_suites(str(rules))
    assert not report.ok
    assert "no limit 'demo-number-hourlyy' in the rules" in report.results[0].error


def test_invalid_rules_are_reported_like_check_does(rules):
    (rules / "policy.yaml").write_text("rules: [", encoding="utf-8")
    proc = smspolicy("test", rules)
    assert proc.returncode == 2
    assert "policy.yaml:2:1: YAML syntax error" in proc.stderr and "are not valid" in proc.stderr
