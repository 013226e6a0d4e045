"""Submit and p2p submit through the running chain: codes, Msg_Ids, the store, the reports."""
from __future__ import annotations

import itertools
import time

import pytest

from tests.http_api.support import PREPAID_BALANCE, REFUSED_PUSH, wait_for

SIG = "【云信科技】"
_numbers = itertools.count(1)


def number() -> str:
    """A fresh CMCC number (per-number limits must not turn tests' messages into reports)."""
    return f"1391235{next(_numbers):04d}"


def test_submit_is_evaluated_stored_forwarded_and_reported(stack, api):
    mobile = number()
    answer = api.submit(f"{SIG}您的验证码是 4711", [mobile], extno="88")
    assert (answer.status, answer.doc["code"], answer.doc["segments"]) == (200, 0, 1), answer
    [message] = answer.doc["messages"]
    assert message["mobile"] == mobile
    row = stack.outbox(message["msg_id"])
    assert row["account_id"] == "900004" and row["dest"] == mobile
    assert row["src_id"] == "10690000488"          # access code + extno
    assert row["channel_id"] == "ch-http" and row["registered_delivery"] == 1
    assert row["content"] == f"{SIG}您的验证码是 4711".encode("utf-16-be")
    # the forwarder posts it to the simulator's HTTP channel; the report is pushed (OK)
    pushed = wait_for(lambda: stack.receiver.pushed("/ok").get(message["msg_id"]),
                      what="the report push")
    assert pushed["stat"] == "DELIVRD" and pushed["mobile"] == mobile


def test_group_submit_one_msg_id_per_number_and_policy_per_recipient(stack, api):
    mobiles = [number(), "13900000001", number()]     # the middle one is globally blacklisted
    answer = api.submit(f"{SIG}群发通知", mobiles)
    assert answer.doc["code"] == 0, answer
    ids = [m["msg_id"] for m in answer.doc["messages"]]
    assert [m["mobile"] for m in answer.doc["messages"]] == mobiles
    assert len(set(ids)) == 3 and [int(i) - int(ids[0]) for i in ids] == [0, 1, 2]
    assert not stack.outbox(ids[1])                   # rejected: not forwarded ...
    wait_for(lambda: len(stack.reports(ids)) == 3, what="three reports")
    time.sleep(0.3)                                   # a second report would come now
    assert stack.reports(ids) == {ids[0]: ["DELIVRD"], ids[1]: ["MA:0001"], ids[2]: ["DELIVRD"]}


def test_long_content_is_one_message_billed_by_segments(stack, api):
    text = SIG + "".join(chr(0x4E00 + i) for i in range(150))
    answer = api.submit(text, [number()])
    assert (answer.doc["code"], answer.doc["segments"]) == (0, 3), answer
    [message] = answer.doc["messages"]
    row = stack.outbox(message["msg_id"])
    assert row["segments"] == 3 and row["content"].decode("utf-16-be") == text
    assert wait_for(lambda: stack.reports([message["msg_id"]])) == {
        message["msg_id"]: ["DELIVRD"]}                # one report: one Msg_Id per number


@pytest.mark.parametrize("body,code", [
    ({"content": "", "mobiles": ["13912340001"]}, 20),                  # 短信内容为空
    ({"content": "x" * 1001, "mobiles": ["13912340001"]}, 4),           # over 1000 characters
    ({"content": "hi", "mobiles": ["1391234000a"]}, 12),                # not a number
    ({"content": "hi", "mobiles": ["13912340001"] * 101}, 102),         # over 100 numbers
    ({"content": "hi", "mobiles": []}, 102),
    ({"content": "hi", "mobiles": ["13912340001"], "extno": "8a"}, 10),  # extno not digits
])
def test_submit_level_refusals_use_the_cmpp_codes(stack, api, body, code):
    before = stack._query("SELECT count(*) FROM outbox")[0][0]
    answer = api.call("POST", "/v1/sms/submit", body)
    assert (answer.status, answer.doc["code"], answer.doc["stage"]) == (200, code, "submit")
    assert "messages" not in answer.doc
    assert stack._query("SELECT count(*) FROM outbox")[0][0] == before   # nothing stored


def test_p2p_each_pair_is_its_own_message(stack, api):
    mobiles = [number(), number(), number()]
    answer = api.p2p([{"mobile": mobiles[0], "content": f"{SIG}张三您好"},
                      {"mobile": mobiles[1], "content": ""},
                      {"mobile": mobiles[2], "content": f"{SIG}" + "长" * 100}])
    assert (answer.status, answer.doc["code"]) == (200, 0), answer
    first, empty, long = answer.doc["messages"]
    assert (first["index"], first["mobile"], first["code"], first["segments"]) == \
        (0, mobiles[0], 0, 1)
    assert (empty["index"], empty["code"]) == (1, 20) and "msg_id" not in empty
    assert (long["code"], long["segments"]) == (0, 2)
    assert stack.outbox(first["msg_id"])["content"].decode("utf-16-be") == f"{SIG}张三您好"
    assert stack.outbox(long["msg_id"])["dest"] == mobiles[2]
    assert wait_for(lambda: len(stack.reports([first["msg_id"], long["msg_id"]])) == 2)


_GOOD = {"mobile": "13912340001", "content": "hi"}


@pytest.mark.parametrize("body,index,field", [
    ({}, -1, ""),                                                         # list missing
    ({"mobileContentList": "13912340001:hi"}, -1, ""),                    # not a list
    ({"mobileContentList": {"mobile": "13912340001", "content": "hi"}}, -1, ""),
    ({"mobileContentList": []}, -1, ""),                                  # empty
    ({"mobileContentList": [_GOOD] * 1001}, -1, ""),                      # over 1000
    ({"mobileContentList": [_GOOD, "13912340001"]}, 1, ""),               # entry not an object
    ({"mobileContentList": [_GOOD, None]}, 1, ""),
    ({"mobileContentList": [_GOOD, {"content": "hi"}]}, 1, "mobile"),     # missing field
    ({"mobileContentList": [_GOOD, _GOOD, {"mobile": "13912340001"}]}, 2, "content"),
    ({"mobileContentList": [{"mobile": 13912340001, "content": "hi"}]}, 0, "mobile"),  # type
    ({"mobileContentList": [_GOOD, {"mobile": "13912340001", "content": ["hi"]}]}, 1,
     "content"),
    ({"mobileContentList": [{"mobile": None, "content": "hi"}]}, 0, "mobile"),
])
def test_malformed_mobile_content_list_gets_22_with_the_index(stack, api, body, index, field):
    before = stack._query("SELECT count(*) FROM outbox")[0][0]
    answer = api.call("POST", "/v1/sms/p2p", body)
    assert answer.status == 400
    assert (answer.doc["code"], answer.doc["index"], answer.doc["field"]) == (22, index, field)
    assert "mobileContentList" in answer.doc["message"]
    assert stack._query("SELECT count(*) FROM outbox")[0][0] == before


def test_a_prepaid_account_pays_per_segment_and_reads_its_balance(stack):
    client = stack.client(*REFUSED_PUSH)
    before = client.call("GET", "/v1/balance").doc
    assert before["billing"] == "prepaid" and before["balance"] <= PREPAID_BALANCE
    # 84 characters: 2 segments; no report wanted (it would wait to be pulled)
    answer = client.submit("余额测试" + "长" * 80, [number()], report=False)
    assert (answer.doc["code"], answer.doc["segments"]) == (0, 2), answer
    after = client.call("GET", "/v1/balance").doc
    assert (after["code"], after["balance"]) == (0, before["balance"] - 2 * 5)
