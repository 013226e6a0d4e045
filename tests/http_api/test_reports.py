"""Status reports of HTTP accounts: pushed when the customer's URL answers OK, else pulled
(at most once per lease, acknowledged), never both."""
from __future__ import annotations

import time

from tests.http_api.support import PULL_ONLY, REFUSED_PUSH, wait_for
from tests.http_api.test_submit import number


def _send(client, n: int) -> list[str]:
    answer = client.submit("报告测试", [number() for _ in range(n)])
    assert answer.doc["code"] == 0, answer
    return [m["msg_id"] for m in answer.doc["messages"]]


def _pull_until(client, msg_ids, timeout=10.0) -> list[dict]:
    """Pull until reports for all `msg_ids` came; those pulled meanwhile (each time it was)."""
    got: list[dict] = []

    def complete():
        got.extend(r for r in client.pull().doc["reports"] if r["msg_id"] in msg_ids)
        return {r["msg_id"] for r in got} >= set(msg_ids)
    wait_for(complete, timeout, f"reports of {msg_ids}")
    return got


def _mine(answer, msg_ids) -> list[dict]:
    return [r for r in answer.doc["reports"] if r["msg_id"] in msg_ids]


def test_reports_whose_push_failed_are_pulled_once_per_lease_until_acknowledged(stack):
    client = stack.client(*REFUSED_PUSH)
    ids = _send(client, 2)
    got = _pull_until(client, ids)
    assert sorted(r["msg_id"] for r in got) == sorted(ids)     # each handed out once
    assert {r["stat"] for r in got} == {"DELIVRD"} and all(r["mobile"] for r in got)
    assert wait_for(lambda: stack.receiver.pushed("/refuse").keys() >= set(ids))  # tried first
    assert _mine(client.pull(), ids) == []                     # leased: not again at once
    first, second = sorted(got, key=lambda r: r["id"])
    ack = client.ack([first["id"], 123456789]).doc
    assert (ack["acked"], ack["unknown"]) == ([first["id"]], [123456789])
    time.sleep(stack.REPORT_LEASE + 0.2)
    again = _mine(client.pull(), ids)
    assert [r["id"] for r in again] == [second["id"]]           # the unacknowledged one only
    assert client.ack([second["id"]]).doc["acked"] == [second["id"]]
    time.sleep(stack.REPORT_LEASE + 0.2)
    assert _mine(client.pull(), ids) == []
    assert client.ack([second["id"]]).doc["unknown"] == [second["id"]]   # acked already


def test_reports_of_an_account_without_push_url_are_pulled(stack):
    client = stack.client(*PULL_ONLY)
    ids = _send(client, 1)
    [report] = _pull_until(client, ids)
    assert report["stat"] == "DELIVRD" and report["src_id"] == "1069107"
    assert client.ack([report["id"]]).doc["acked"] == [report["id"]]


def test_a_report_pushed_ok_is_never_pulled(stack, api):
    ids = _send(api, 1)
    wait_for(lambda: ids[0] in stack.receiver.pushed("/ok"), what="the push")
    assert _mine(api.pull(), ids) == []


def test_the_cursor_pages_through_reports(stack):
    client = stack.client(*PULL_ONLY)
    ids = _send(client, 3)
    wait_for(lambda: len(stack.reports(ids)) == 3, what="3 reports")
    time.sleep(0.5)   # the pusher records its 253 (no URL) for all three
    page1 = client.pull(limit=2).doc
    assert len(page1["reports"]) == 2 and page1["cursor"] == page1["reports"][-1]["id"]
    page2 = client.pull(cursor=page1["cursor"], limit=2).doc
    assert len(page2["reports"]) == 1 and page2["cursor"] == 0     # the end: start over
    assert {r["msg_id"] for r in page1["reports"] + page2["reports"]} == set(ids)
    client.ack([r["id"] for r in page1["reports"] + page2["reports"]])


def test_reports_of_one_account_are_not_handed_to_another(stack):
    ids = _send(stack.client(*PULL_ONLY), 1)
    wait_for(lambda: stack.reports(ids), what="the report")
    time.sleep(0.5)
    assert _mine(stack.client(*REFUSED_PUSH).pull(), ids) == []
    [report] = _pull_until(stack.client(*PULL_ONLY), ids)
    assert stack.client(*REFUSED_PUSH).ack([report["id"]]).doc["unknown"] == [report["id"]]
    assert stack.client(*PULL_ONLY).ack([report["id"]]).doc["acked"] == [report["id"]]
