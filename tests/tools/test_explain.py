"""`smspolicy explain` against a local rules folder (the daemon's --target form is in tests/e2e)."""
from __future__ import annotations

import json
import re

from .conftest import smspolicy

AT = "2026-11-26T10:00:00+08:00"


def explain(*args):
    proc = smspolicy("explain", "--rules", "rules", "--at", AT, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_text_shows_facts_every_rule_with_matched_yes_no_shadow_marked_and_the_decision():
    out = explain("--account", "900001", "--to", "13800138000", "--to", "13900000001",
                  "--text", "【云信科技】贷款秒批，验证码1234")
    assert re.search(r"message\.keyword_groups\s+\[\"loans\"\]", out)
    assert re.search(r"recipient\.blacklisted\.global\s+true", out)
    assert "submit stage: 11 rules evaluated, 0 matched" in out
    assert out.count("recipient stage: 21 rules evaluated") == 2
    assert re.search(r"yes\s+global-blacklist\s+MA:0001\s+priority 800\s+<- decides", out)
    assert re.search(r"no\s+number-length\s+MA:0021", out)
    assert re.search(r"yes\s+trial-loan-ads\s+MA:0002\s+priority 580\s+\[shadow: recorded, never enforced\]", out)
    assert "decision: accept via ch-cmcc; shadow matches: trial-loan-ads" in out
    assert "decision: reject MA:0001 by global-blacklist; shadow matches: trial-loan-ads" in out
    assert "counters read" in out and "demo-number-hourly" in out


def test_a_submit_refusal_says_recipient_rules_were_not_evaluated():
    out = explain("--account", "900001", "--to", "13800138000", "--text", "没有签名")
    assert re.search(r"yes\s+submit-signature-not-registered\s+17\s+priority 920\s+<- decides", out)
    assert "refused with submit result 17 by rule submit-signature-not-registered" in out
    assert "recipient stage" not in out


def test_json_has_facts_rules_and_the_decision():
    doc = json.loads(explain("--account", "900008", "--to", "13800138000", "--text", "您好", "--json"))
    assert doc["facts"]["message"]["account.audit_mode"] == "manual"
    assert doc["facts"]["recipients"][0]["route.channel"] == "ch-cmcc"
    hold = [r for r in doc["rules"] if r["rule_id"] == "audit-hold"]
    assert hold == [{"rule_id": "audit-hold", "recipient_index": 0, "matched": True, "mode": "enforce",
                     "code": "MA:0006", "priority": 100, "description": hold[0]["description"]}]
    assert doc["decision"]["recipients"][0]["action"] == "hold"
    assert len(doc["rules"]) == 11 + 21


def test_the_send_window_follows_the_time_given():
    out = smspolicy("explain", "--rules", "rules", "--account", "900013", "--to", "13800138000",
                    "--text", "你好", "--at", "2026-11-26T21:00:00+08:00").stdout
    assert "refused with submit result 16 by rule submit-send-window" in out


def test_mistakes_get_clear_messages():
    proc = smspolicy("explain", "--rules", "rules", "--account", "999999", "--to", "1")
    assert proc.returncode == 2 and "no account '999999'" in proc.stderr
    proc = smspolicy("explain", "--rules", "rules", "--account", "900001", "--to", "1", "--at", "yesterday")
    assert proc.returncode == 2 and "--at:" in proc.stderr
    proc = smspolicy("explain", "--rules", "rules", "--account", "900001", "--to", "1", "--msg-fmt", "0",
                     "--text", "中文")
    assert proc.returncode != 0 and "cannot be written in msg_fmt 0" in proc.stderr
