"""SUBMIT end to end: every submit result and every status-report code of the shipped rules.

(15, 16, MA:0039 and Result 8 need a daemon of their own: test_own_daemon.py, test_flow.py.)
"""
import sqlite3
from datetime import datetime

import pytest

from gateway.cmpp import V30, unpack_msg_id
from tests.frontend.cmpp_client import DEMO_SIGNATURE, CmppClient, fresh_number, run

OK_NUMBER = "13912345678"          # CMCC, Jiangsu: routed to ch-cmcc, on no list
TEXT = DEMO_SIGNATURE + "您的快递已到，请及时领取"


def outbox(gateway, sql="SELECT msg_id, msg_ids, dest, state, channel_id, content FROM outbox"
                        " WHERE msg_id = ?", *args):
    with sqlite3.connect(gateway.store_path) as db:
        return db.execute(sql, args).fetchall()


def test_accepted_message_is_stored_before_submit_resp(gateway):
    number = fresh_number()

    async def go():
        client = await CmppClient.logged_in(gateway.port)
        resp = await client.send_text(TEXT, (number,))
        await client.close()
        return resp
    resp = run(go())
    assert resp.result == 0
    fields, now = unpack_msg_id(resp.msg_id), datetime.now()
    assert (fields.month, fields.day, fields.gateway_code) == (now.month, now.day, 1)
    [row] = outbox(gateway, "SELECT dest, state, channel_id, content FROM outbox WHERE msg_id = ?",
                   str(resp.msg_id))
    assert row == (number, "pending", "ch-cmcc", TEXT.encode("utf-16-be"))


def test_group_send_gets_one_msg_id_per_recipient(gateway):
    first, last = fresh_number(), fresh_number()

    async def go():
        client = await CmppClient.logged_in(gateway.port)
        resp = await client.send_text(TEXT, (first, "13900000001", last))
        report = await client.report(resp.msg_id + 1)
        await client.close()
        return resp, report
    resp, report = run(go())
    assert resp.result == 0
    assert (report.stat, report.dest_terminal_id) == ("MA:0001", "13900000001")
    rows = outbox(gateway, "SELECT msg_id, dest FROM outbox WHERE request_id = ? ORDER BY id",
                  f"{gateway.gateway_id}:{resp.msg_id}")
    assert rows == [(str(resp.msg_id), first), (str(resp.msg_id + 2), last)]


SUBMIT_CASES = {
    # result: (account, secret, submit fields)
    4: ("900001", "888888", dict(content=b"\x00a" * 71)),                 # 142 bytes in one SMS
    5: ("900002", "pre-900002", dict(text="费用", fee_code="000099")),
    9: ("900001", "888888", dict(content=TEXT.encode("gb18030"), msg_fmt=15)),
    10: ("900001", "888888", dict(text=TEXT, src_id="10690")),
    12: ("900001", "888888", dict(text=TEXT, dests=("1391234567a",))),
    17: ("900001", "888888", dict(text="没有签名的短信")),
    18: ("900005", "direct-900005", dict(text="群发", dests=(OK_NUMBER, "13912345679"),
                                         src_id="10690005")),
    19: ("900006", "sign-900006", dict(text="【甲公司】你好", src_id="106900006")),
    20: ("900001", "888888", dict(content=b"")),
    102: ("900001", "888888", dict(text=TEXT, dests=())),
}


@pytest.mark.parametrize("result", sorted(SUBMIT_CASES))
def test_submit_results(gateway, result):
    account, secret, fields = SUBMIT_CASES[result]
    fields = {"src_id": "1069" + account[1:], **fields}

    async def go():
        client = await CmppClient.logged_in(gateway.port, account, secret)
        resp = await client.request(client.submit_packet(**fields))
        await client.close()
        return resp
    resp = run(go())
    assert resp.result == result
    assert outbox(gateway, "SELECT count(*) FROM outbox WHERE request_id = ?",
                  f"{gateway.gateway_id}:{resp.msg_id}") == [(0,)]    # a refused submit stores nothing


# status-report codes: account -> (secret, Src_Id, [(destination, text, stat)])
REPORT_CASES = {
    "900001": ("888888", "106900001", [
        ("13900000001", TEXT, "MA:0001"),            # global blacklist
        ("12345678901", TEXT, "MA:0005"),            # 11 digits, not a mobile number
        ("19999999999", TEXT, "MA:0014"),            # valid, segment not assigned
        ("1380013800", TEXT, "MA:0021"),             # 10 digits
        ("13700000001", TEXT, "MA:0023"),            # the customer's own blacklist
        ("13600000001", TEXT, "MA:0027"),            # ch-cmcc's blacklist
        ("13400001234", TEXT, "MA:0028"),            # global segment list
        ("13500001234", TEXT, "MA:0029"),            # ch-cmcc's segment list
        ("13800000404", TEXT, "MA:0034"),            # file blacklist
        (OK_NUMBER, DEMO_SIGNATURE + "最新博彩网站", "MA:0002"),
        (OK_NUMBER, DEMO_SIGNATURE + "您的验证码是{code}", "MA:0009"),   # unresolved placeholder
    ]),
    "900007": ("filing-900007", "106900007", [(OK_NUMBER, "随便说点什么", "MA:0024")]),
    "900009": ("audit-900009", "106900009", [(OK_NUMBER, "审核拒绝", "MA:0030")]),
    "900010": ("region-900010", "106900010", [("13800138000", "北京号码", "MA:0033")]),
    "900014": ("edge-900014", "106900014", [(OK_NUMBER, "维护通道", "MA:0036")]),
    "900015": ("mkt-900015", "106900015", [("13000000000", "联通号码", "MA:0003")]),
}


@pytest.fixture(scope="module")
def reports(gateway):
    """Send every case once (one login per account) and collect the reports: {stat: report}."""
    async def go():
        got = {}
        for account, (secret, src, cases) in REPORT_CASES.items():
            client = await CmppClient.logged_in(gateway.port, account, secret)
            sent = []
            for dest, text, stat in cases:
                resp = await client.send_text(text, (dest,), src_id=src)
                assert resp.result == 0, (account, dest, stat, resp.result)
                sent.append((stat, resp.msg_id))
            for stat, msg_id in sent:
                got[stat] = await client.report(msg_id)
            await client.close()
        return got
    return run(go(), 60)


@pytest.mark.parametrize("stat", sorted(s for _, _, cases in REPORT_CASES.values()
                                        for _, _, s in cases))
def test_rejected_recipient_gets_a_status_report(reports, stat):
    report = reports[stat]
    assert report.stat == stat
    assert len(report.submit_time) == 10 and len(report.done_time) == 10


def test_no_report_unless_asked(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        resp = await client.send_text(TEXT, ("13900000001",), registered_delivery=0)
        try:
            await client.report(resp.msg_id, timeout=1.5)
            return True
        except TimeoutError:
            return False
        finally:
            await client.close()
    assert run(go()) is False


def test_cmpp30_report_layout(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port, "900011", "cmpp30-900011", V30)
        resp = await client.send_text("三点零", ("13900000001",), src_id="106900011")
        report = await client.report(resp.msg_id)
        deliver = client.delivers[-1]
        await client.close()
        return report, deliver
    report, deliver = run(go())
    assert report.stat == "MA:0001" and len(deliver.msg_content) == 71


def test_channel_settings_give_ma0025_and_ma0037(gateway):
    # 900014 routes CTCC to a UCS2-only channel and CUCC to one that takes 300 characters
    async def go():
        client = await CmppClient.logged_in(gateway.port, "900014", "edge-900014")
        gbk = await client.send_text("", ("18900000000",), src_id="106900014", msg_fmt=15,
                                     content="国标编码".encode("gb18030"))
        parts = client.long_parts("长" * 350, ref=41, dests=("13000000000",), src_id="106900014")
        long = [await client.request(p) for p in parts]
        reports = [await client.report(r.msg_id) for r in [gbk, *long]]
        await client.close()
        return [r.result for r in [gbk, *long]], [r.stat for r in reports]
    results, stats = run(go())
    assert results == [0] * 7
    assert stats == ["MA:0025"] + ["MA:0037"] * 6
