"""The upstream simulator as a separate process, driven over CMPP by a blocking test client."""
from __future__ import annotations

import hashlib
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from gateway.cmpp import (
    ActiveTest, ActiveTestResp, Connect, ConnectResp, Submit, SubmitResp, authenticator_ismg,
    authenticator_source, parse_report, timestamp_now,
)
from gateway.cmpp.udh import decode_content
from gateway.simulator import ControlError
from tests.simulator.support import CmppClient, SimulatorProc


def _client(sim, account="SIM001", secret="pw1", version=0x30) -> CmppClient:
    c = CmppClient(sim.cmpp, version)
    resp = c.login(account, secret)
    assert isinstance(resp, ConnectResp) and resp.status == 0
    return c


def test_login_checks_the_authenticator_and_answers_with_its_own(sim):
    c = CmppClient(sim.cmpp, 0x30)
    ts = timestamp_now()
    auth = authenticator_source("SIM001", "pw1", ts)
    c.send(Connect(1, "SIM001", auth, 0x30, ts))
    resp = c.recv()
    assert resp.status == 0
    assert resp.authenticator_ismg == authenticator_ismg(0, auth, "pw1", 0x30)
    c.close()


@pytest.mark.parametrize("account,secret,version,status", [
    ("SIM001", "wrong", 0x30, 3),
    ("NOPE01", "pw1", 0x30, 2),
    ("SIM001", "pw1", 0x40, 4),
])
def test_bad_logins_are_refused_and_closed(sim, account, secret, version, status):
    c = CmppClient(sim.cmpp, 0x30)
    resp = c.login(account, secret, version)
    assert resp.status == status
    assert resp.authenticator_ismg == bytes(16)
    with pytest.raises(ConnectionError):
        c.recv()
    c.close()


def test_a_2x_client_gets_2x_layouts(sim):
    c = _client(sim, version=0x20)
    [resp] = c.submit(["13800138000"], "hello 2.x")
    assert isinstance(resp, SubmitResp) and resp.result == 0 and resp.msg_id
    [report] = c.wait_delivers(1)
    assert parse_report(report, 0x20).msg_id == resp.msg_id
    c.close()


def test_group_submit_gets_one_report_per_recipient_with_consecutive_ids(sim):
    c = _client(sim)
    dests = ["13800138001", "13800138002", "13800138003"]
    [resp] = c.submit(dests, "group")
    reports = [parse_report(d, 0x30) for d in c.wait_delivers(3)]
    assert sorted((r.msg_id, r.dest_terminal_id) for r in reports) == \
        [(resp.msg_id + i, d) for i, d in enumerate(dests)]
    assert {r.stat for r in reports} <= {"DELIVRD", "UNDELIV"}
    assert all(d.dest_id == "10690001" and d.registered_delivery == 1 for d in c.delivers)
    c.close()


def test_no_report_when_none_was_requested(sim):
    c = _client(sim)
    [resp] = c.submit(["13800138000"], "quiet", report=0)
    assert resp.result == 0
    c.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        c.recv_skipping(lambda p: True)
    c.close()


def test_result_marker_answers_that_result_and_sends_no_report(sim):
    c = _client(sim)
    [resp] = c.submit(["13800138000"], "x #fault:result=13")
    assert resp.result == 13
    c.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        c.recv_skipping(lambda p: True)
    c.close()


def test_stat_marker_chooses_the_report_state(sim):
    c = _client(sim)
    [resp] = c.submit(["13800138000"], "#fault:stat=EXPIRED please")
    report = parse_report(c.wait_delivers(1)[0], 0x30)
    assert (report.msg_id, report.stat) == (resp.msg_id, "EXPIRED")
    c.close()


def test_noresp_marker_leaves_the_submit_unanswered_but_the_link_alive(sim):
    c = _client(sim)
    c.send(Submit(
        77, msg_fmt=8, dest_terminal_ids=("13800138000",),
        msg_content="#fault:noresp".encode("utf-16-be")))
    c.send(ActiveTest(78))
    answer = c.recv_skipping(lambda p: not hasattr(p, "msg_content"))
    assert isinstance(answer, ActiveTestResp) and answer.sequence_id == 78
    c.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        c.recv_skipping(lambda p: True)
    c.close()


def test_drop_marker_closes_the_connection_without_an_answer(sim):
    c = _client(sim)
    with pytest.raises(ConnectionError):
        c.submit(["13800138000"], "bye #fault:drop")
    c.close()


def test_queued_faults_apply_to_the_next_submits_in_order(sim):
    sim.control("fault result=8 count=2")
    sim.control("fault delay=0.3")
    c = _client(sim)
    results = [c.submit(["13800138000"], f"n{i}", report=0)[0].result for i in range(2)]
    started = time.monotonic()
    [slow] = c.submit(["13800138000"], "slow", report=0)
    assert results == [8, 8] and slow.result == 0
    assert time.monotonic() - started >= 0.25
    assert sim.control("stats")["queued_faults"] == []
    c.close()


def test_bad_control_commands_are_refused_with_a_reason(sim):
    with pytest.raises(ControlError, match="bad fault 'result=0'"):
        sim.control("fault result=0")
    with pytest.raises(ControlError, match="unknown command"):
        sim.control("explode")
    with pytest.raises(ControlError, match="unknown account"):
        sim.control("mo NOPE01 13800138000 106900 hi")


def test_long_message_parts_are_recorded_with_their_udh(sim):
    start = len(sim.submits())
    c = _client(sim)
    text = "长" * 140
    resps = c.submit(["13800138000"], text, report=0)
    assert [r.result for r in resps] == [0, 0, 0]
    parts = sim.submits(start)
    assert [(p["pk_total"], p["pk_number"], p["concat"]) for p in parts] == \
        [(3, i, [42, 3, i]) for i in (1, 2, 3)]
    assert "".join(p["text"] for p in parts) == text
    c.close()


def test_mo_goes_to_the_accounts_connection(sim):
    c = _client(sim, "SIM002", "pw2")
    sim.control("mo SIM002 13900139000 1069000188 退订 TD")
    [mo] = c.wait_delivers(1)
    assert mo.registered_delivery == 0
    assert (mo.src_terminal_id, mo.dest_id) == ("13900139000", "1069000188")
    assert decode_content(mo.msg_content, mo.msg_fmt) == "退订 TD"
    c.close()


def test_unacknowledged_delivers_are_sent_again_after_reconnect(sim):
    c = _client(sim, "SIM002", "pw2")
    [resp] = c.submit(["13800138009"], "resend me")
    [first] = c.wait_delivers(1, ack=False)
    c.close()
    sim.wait(lambda: "SIM002" not in sim.control("stats")["connections"], what="disconnect")
    c2 = _client(sim, "SIM002", "pw2")
    [again] = c2.wait_delivers(1)
    assert parse_report(again, 0x30) == parse_report(first, 0x30)
    assert again.msg_id == first.msg_id  # the same DELIVER, so the SP can de-duplicate it
    assert parse_report(again, 0x30).msg_id == resp.msg_id
    time.sleep(0.3)
    assert sim.control("stats")["pending"] == {}
    c2.close()


def test_drop_command_closes_the_accounts_links(sim):
    c = _client(sim)
    assert sim.control("drop SIM001")["dropped"] >= 1
    with pytest.raises(ConnectionError):
        c.recv()
    c.close()


def test_report_states_follow_the_seed(tmp_path):
    def states(workdir):
        s = SimulatorProc(workdir, extra=["--report-delay", "0", "--seed", "3",
                                          "--delivrd-ratio", "0.5"])
        try:
            c = _client(s)
            c.submit([f"1380013{i:04d}" for i in range(20)], "seeded")
            reports = [parse_report(d, 0x30) for d in c.wait_delivers(20)]
            c.close()
            return [r.stat for r in sorted(reports, key=lambda r: r.dest_terminal_id)]
        finally:
            s.stop()

    first = states(tmp_path / "a")
    assert first == states(tmp_path / "b")
    assert {"DELIVRD", "UNDELIV"} == set(first)


def _post(url, doc, timeout=5):
    req = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def _signed(account, secret, **kw):
    ts = "1126120000"
    return {"account": account, "timestamp": ts,
            "sign": hashlib.md5(f"{account}{secret}{ts}".encode()).hexdigest(), **kw}


def test_http_channel_answers_with_a_final_state_or_the_marked_result(sim):
    ok = _post(sim.http_url, _signed("SIM001", "pw1", dest="13800138000", content="hi #fault:stat=DELIVRD"))
    assert ok["result"] == 0 and ok["stat"] == "DELIVRD" and ok["msg_id"]
    refused = _post(sim.http_url, _signed("SIM001", "pw1", dest="13800138000",
                                          content="#fault:result=21"))
    assert refused == {"result": 21}
    with pytest.raises(urllib.error.HTTPError) as e:
        _post(sim.http_url, _signed("SIM001", "bad", dest="13800138000", content="x"))
    assert e.value.code == 401
