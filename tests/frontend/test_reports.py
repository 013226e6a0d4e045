"""Status reports and MO: kept until DELIVER_RESP, resent, delivered on any connection of the
account, waiting for an offline customer across a restart of the front-end."""
import asyncio
import sqlite3
import time

from gateway.cmpp import DeliverResp
from gateway.store import GatewayStore, NewReport
from tests.frontend.cmpp_client import DEMO_SIGNATURE, CmppClient, fresh_number, run

TEXT = DEMO_SIGNATURE + "报告测试"
BLACKLISTED = "13900000001"   # MA:0001


def report_state(g, msg_id):
    with sqlite3.connect(g.store_path) as db:
        return db.execute("SELECT state, attempts FROM reports WHERE msg_id = ?",
                          (str(msg_id),)).fetchone()


def delivers_for(client, msg_id):
    return [d for d in client.delivers if d.registered_delivery == 1
            and client.parse(d).msg_id == msg_id]


def test_unacknowledged_report_is_resent_n_times_then_kept_for_the_next_login(gateway):
    async def go():
        silent = await CmppClient.logged_in(gateway.port)
        silent.auto_ack = False
        resp = await silent.send_text(TEXT, (BLACKLISTED,))
        assert resp.result == 0, resp  # else no report is owed
        await silent.report(resp.msg_id)
        await asyncio.sleep(3.6)              # report_resend 1 s, retries 3
        sends = delivers_for(silent, resp.msg_id)
        await silent.close()
        back = await CmppClient.logged_in(gateway.port)
        again = await back.report(resp.msg_id)
        await asyncio.sleep(0.3)
        await back.close()
        return resp, sends, again, back.delivers
    resp, sends, again, later = run(go())
    assert len(sends) == 3
    assert len({d.msg_id for d in sends}) == 1        # resent as the same DELIVER Msg_Id
    assert again.stat == "MA:0001"
    assert report_state(gateway, resp.msg_id)[0] == "acked"


def test_report_goes_to_another_connection_of_the_account(gateway):
    async def go():
        a = await CmppClient.logged_in(gateway.port)
        b = await CmppClient.logged_in(gateway.port)
        a.auto_ack = False
        resp = await a.send_text(TEXT, (BLACKLISTED,))
        assert resp.result == 0, resp
        await a.close()                         # whatever a got, it never acknowledged it
        report = await b.report(resp.msg_id, timeout=4)
        await asyncio.sleep(0.2)
        await b.close()
        return resp, report
    resp, report = run(go())
    assert report.stat == "MA:0001"
    assert report_state(gateway, resp.msg_id)[0] == "acked"


def test_held_message_rejected_while_offline_reaches_the_customer_after_a_restart(daemon, make_gateway):
    g = make_gateway(daemon.target)

    async def submit():
        client = await CmppClient.logged_in(g.port, "900008", "audit-900008")
        resp = await client.send_text("人工审核的短信", (fresh_number(),), src_id="106900008")
        await client.close()
        return resp
    resp = run(submit())
    assert resp.result == 0
    store = GatewayStore(g.store_path)        # the auditor's tool / the forwarder: another process
    [held] = store.held_messages()
    assert held.msg_id == resp.msg_id
    assert store.reject_held(held.id)
    store.close()
    g.restart()

    async def come_back():
        client = await CmppClient.logged_in(g.port, "900008", "audit-900008")
        report = await client.report(resp.msg_id)
        await client.close()
        return report
    assert run(come_back()).stat == "MA:0006"


def test_mo_message_is_delivered_and_acknowledged(gateway):
    store = GatewayStore(gateway.store_path)
    mo_id = store.add_mo("900001", "10690000188", "13912345678", "退订".encode("utf-16-be"), 8)
    store.close()

    async def go():
        client = await CmppClient.logged_in(gateway.port)
        d = await client.wait_deliver(lambda d: d.registered_delivery == 0)
        await asyncio.sleep(0.2)
        await client.close()
        return d
    d = run(go())
    assert (d.dest_id, d.src_terminal_id, d.msg_fmt) == ("10690000188", "13912345678", 8)
    assert d.msg_content.decode("utf-16-be") == "退订"
    with sqlite3.connect(gateway.store_path) as db:
        assert db.execute("SELECT state FROM mo WHERE id = ?", (mo_id,)).fetchone() == ("acked",)


def test_reports_beyond_the_window_flow_as_acknowledgements_free_it(daemon, make_gateway):
    """Reports the forwarder (another process) stored, 20 windows' worth, for one connection:
    each DELIVER_RESP makes room for the next report at once. Waiting for the next poll instead
    (1 s with these timers) would take 19 s; every report is then recorded as acknowledged."""
    g = make_gateway(daemon.target, report_resend=60, response_timeout=60, window=16)
    n = 20 * 16
    store = GatewayStore(g.store_path)
    now = time.time()
    store.add_reports([NewReport("900001", 7_000_000 + i, fresh_number(), "DELIVRD", now, now,
                                 True, "106900001", "") for i in range(n)])

    async def go():
        client = await CmppClient.logged_in(g.port)
        started = time.monotonic()
        while len(client.reports()) < n and time.monotonic() - started < 8:
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        await asyncio.sleep(0.3)   # the last DELIVER_RESPs reach the front-end
        await client.close()
        return client.reports(), took
    reports, took = run(go())
    assert sorted(r.msg_id for r in reports) == [7_000_000 + i for i in range(n)], took
    deadline = time.time() + 5
    while time.time() < deadline:
        acked = store._db.execute("SELECT count(*) FROM reports WHERE state = 'acked'").fetchone()[0]
        if acked == n:
            break
        time.sleep(0.05)
    store.close()
    assert acked == n


def test_reports_another_process_stores_go_out_without_waiting_for_the_poll(daemon, make_gateway):
    """The forwarder (here: this test process) commits a report; the front-end notices the
    other process's commit and delivers it within a fraction of its 1 s poll, every time."""
    g = make_gateway(daemon.target, report_resend=60, response_timeout=60)
    store = GatewayStore(g.store_path)

    async def go():
        client = await CmppClient.logged_in(g.port)
        await asyncio.sleep(1.2)   # past the login's own round
        took = []
        for i in range(8):
            now = time.time()
            store.add_reports([NewReport("900001", 8_000_000 + i, fresh_number(), "DELIVRD", now,
                                         now, True, "106900001", "")])
            started = time.monotonic()
            await client.report(8_000_000 + i, timeout=3)
            took.append(time.monotonic() - started)
            await asyncio.sleep(0.13 * (i % 3))   # land anywhere in the poll's second
        await client.close()
        return took
    try:
        took = run(go())
    finally:
        store.close()
    assert max(took) < 0.6, took   # a 1 s poll alone: uniform over 0..1 s


def test_report_of_a_submit_with_a_gbk_service_id_reaches_the_customer(gateway):
    """Octet-string fields hold whatever bytes the customer sent (here a GBK Service_Id): the
    SUBMIT is answered Result 0, so its report must be deliverable, carrying those bytes."""
    from gateway.cmpp import V21, encode
    gbk = "短".encode("gbk") + b"X"
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        packet = client.submit_packet(TEXT, (BLACKLISTED,), service_id="SVC")
        raw = bytearray(encode(packet, V21))
        raw[12 + 12:12 + 15] = gbk                      # Service_Id follows Msg_Level
        future = asyncio.get_running_loop().create_future()
        client._waiting[packet.sequence_id] = future
        client.send_raw(bytes(raw))
        resp = await asyncio.wait_for(future, 5)
        deliver = await client.wait_deliver(
            lambda d: d.registered_delivery == 1 and client.parse(d).msg_id == resp.msg_id)
        await asyncio.sleep(0.2)
        await client.close()
        return resp, deliver
    resp, deliver = run(go())
    assert resp.result == 0
    assert deliver.service_id.encode("latin-1") == gbk
    assert report_state(gateway, resp.msg_id)[0] == "acked"


def test_a_report_that_cannot_be_encoded_fails_loudly_and_the_others_flow(daemon, make_gateway):
    """A stored report whose fields no DELIVER can carry (a Service_Id of characters that are
    no byte, written by another process) is logged as an error and stored as 'failed', never
    counted as sent and resent; the reports beside it are delivered."""
    g = make_gateway(daemon.target)
    store = GatewayStore(g.store_path)
    now = time.time()
    store.add_reports([NewReport("900001", 9_100_001, fresh_number(), "DELIVRD", now, now, True,
                                 "106900001", "短信"),
                       NewReport("900001", 9_100_002, fresh_number(), "DELIVRD", now, now, True,
                                 "106900001", "svc")])
    async def go():
        client = await CmppClient.logged_in(g.port)
        good = await client.report(9_100_002)
        await asyncio.sleep(2.5)                      # report_resend 1 s: resends would show
        await client.close()
        return good, client.reports()
    try:
        good, reports = run(go())
        states = dict(store._db.execute("SELECT msg_id, state FROM reports").fetchall())
    finally:
        store.close()
    assert good.stat == "DELIVRD"
    assert [r.msg_id for r in reports] == [9_100_002]
    assert states == {"9100001": "failed", "9100002": "acked"}
    assert "(Msg_Id 9100001 to" in g.proc.output() and "cannot be encoded" in g.proc.output()


def test_a_second_connection_does_not_bring_reports_awaiting_their_resend(daemon, make_gateway):
    """A report written on connection A and not yet answered waits for its resend timer (30 s
    here); the customer opening a connection B meanwhile must not get it again at once."""
    g = make_gateway(daemon.target, report_resend=30)
    async def go():
        a = await CmppClient.logged_in(g.port)
        a.auto_ack = False                            # A answers late
        resp = await a.send_text(TEXT, (BLACKLISTED,))
        assert resp.result == 0, resp
        first = await a.wait_deliver(lambda d: d.registered_delivery == 1)
        b = await CmppClient.logged_in(g.port)
        await asyncio.sleep(1.0)
        a.send(DeliverResp(first.sequence_id, first.msg_id, 0))   # the late answer
        await asyncio.sleep(0.3)
        await a.close()
        await b.close()
        return resp, a.delivers, b.delivers
    resp, on_a, on_b = run(go())
    assert len([d for d in on_a if d.registered_delivery == 1]) == 1
    assert [d for d in on_b if d.registered_delivery == 1] == []
    assert report_state(g, resp.msg_id) == ("acked", 1)
