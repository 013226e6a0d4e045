"""The CMPP login policy (CONNECT_RESP.Status) through PolicyService.Login, every status code."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import grpc
import pytest

from gateway.cmpp.auth import authenticator_ismg, authenticator_source, timestamp_now
from policy.api.v1 import policy_pb2 as pb
from tests.support.procs import DaemonProc
from tests.support.redis import daemons_on_redis

from .grpc_helpers import TZ, fresh_ts
from .grpc_helpers import login as cmpp_login

SECRETS = {"900001": "888888", "900002": "pre-900002", "900003": "off-900003",
           "900004": "http-900004-secret", "900011": "v3-900011", "900012": "login-900012",
           "900017": "new-900017"}


def login(daemon, account="900001", secret=None, **kw):
    return cmpp_login(daemon, account, SECRETS.get(account, "x") if secret is None else secret, **kw)


@pytest.fixture(scope="module", autouse=True)
def _secrets():
    text = open("rules/accounts.yaml", encoding="utf-8").read()
    found = dict(re.findall(r'- id: "(\d+)"\n\s+name: .*\n\s+secret: "([^"]+)"', text))
    SECRETS.update(found)


def test_success_gives_the_ismg_authenticator_and_a_lease(daemon):
    ts = fresh_ts()
    resp = login(daemon, ts=ts)
    assert resp.status == 0 and resp.session_id and resp.lease_seconds > 0
    auth = authenticator_source("900001", "888888", ts)
    assert resp.authenticator_ismg == authenticator_ismg(0, auth, "888888", 0x21)
    daemon.policy.EndSession(pb.SessionRequest(session_id=resp.session_id), timeout=5)


@pytest.mark.parametrize("kw,status", [
    (dict(malformed=True), 1),
    (dict(ip="10.20.30.40"), 2),
    (dict(secret="wrong"), 3),
    (dict(account="999999"), 3),
    (dict(version=0x30), 4),
    (dict(account="900004"), 6),
    (dict(account="900003"), 7),
    (dict(account="900017"), 5),
])
def test_refusals(daemon, kw, status):
    resp = login(daemon, **kw)
    assert resp.status == status, resp.reason
    assert resp.authenticator_ismg == b"" and resp.session_id == ""


def test_cmpp_3_only_where_enabled(daemon):
    resp = login(daemon, account="900011", version=0x30)
    assert resp.status == 0
    daemon.policy.EndSession(pb.SessionRequest(session_id=resp.session_id), timeout=5)


def test_stale_and_future_timestamps_are_refused(daemon):
    assert login(daemon, ts=timestamp_now(datetime.now(TZ) - timedelta(hours=1))).status == 3
    assert login(daemon, ts=timestamp_now(datetime.now(TZ) + timedelta(hours=1))).status == 3
    assert login(daemon, ts=1399999999).status == 3  # month 13: not a date at all


def test_connections_opened_in_the_same_second_all_log_in(daemon):
    ts = fresh_ts()
    first, second = login(daemon, ts=ts), login(daemon, ts=ts)
    assert (first.status, second.status) == (0, 0)
    for sid in (first.session_id, second.session_id):
        daemon.policy.EndSession(pb.SessionRequest(session_id=sid), timeout=5)


def test_http_account_logs_in_over_http_and_cmpp_account_does_not(daemon):
    from gateway.http_api.signing import sign, string_to_sign
    ts = int(time.time())

    def http_login(account, secret, signed_ts=ts):
        return daemon.policy.Login(pb.LoginRequest(
            account_id=account, timestamp=ts, peer_ip="127.0.0.1",
            access_mode=pb.ACCESS_MODE_HTTP, frontend_id="tests",
            http_signature=bytes.fromhex(sign(secret, "GET", "/v1/balance", signed_ts, b"")),
            http_string_to_sign=string_to_sign("GET", "/v1/balance", signed_ts, b"")), timeout=10)

    ok = http_login("900004", SECRETS["900004"])
    assert ok.status == 0 and ok.access_code == "106900004", ok.reason
    daemon.policy.EndSession(pb.SessionRequest(session_id=ok.session_id), timeout=5)
    assert http_login("900004", "wrong").status == 3
    assert http_login("900004", SECRETS["900004"], signed_ts=ts - 1).status == 3
    assert http_login("900001", "888888").status == 6


def test_max_connections_across_front_ends(daemon):
    sessions = []
    for i in range(4):  # 900001 allows 4
        resp = login(daemon)
        assert resp.status == 0
        sessions.append(resp.session_id)
    assert login(daemon).status == 21
    daemon.policy.EndSession(pb.SessionRequest(session_id=sessions.pop()), timeout=5)
    again = login(daemon)
    assert again.status == 0
    for sid in sessions + [again.session_id]:
        assert daemon.policy.EndSession(pb.SessionRequest(session_id=sid), timeout=5).ok


def test_renewing_an_unknown_session_fails(daemon):
    assert not daemon.policy.RenewSession(pb.SessionRequest(session_id="nope"), timeout=5).ok


def _window_excluding_now() -> str:
    now = datetime.now(TZ)
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    return f"{start:%H:%M}-{end:%H:%M}"


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    """A daemon where 900012's login window and 900013's send window exclude the present."""
    d = DaemonProc(tmp_path_factory.mktemp("windowed"), extra=[])
    d.stop()
    path = d.rules_dir / "accounts.yaml"
    text = path.read_text(encoding="utf-8")
    window = _window_excluding_now()
    text = text.replace('login_window: "09:00-18:00"', f'login_window: "{window}"')
    text = text.replace('send_window: "08:00-20:00"', f'send_window: "{window}"')
    path.write_text(text, encoding="utf-8")
    d.start()
    yield d
    d.stop()


def test_login_window(windowed):
    assert login(windowed, account="900012").status == 16


def test_send_window_gives_submit_result_16(windowed):
    from tests.e2e.grpc_helpers import request
    resp = windowed.policy.Evaluate(request(account="900013", src_id="106900013"), timeout=10)
    assert (resp.submit_result, resp.submit_rule_id) == (16, "submit-send-window")


def test_prepaid_balance_at_zero_refuses_login_and_a_short_balance_refuses_submit(windowed):
    from tests.e2e.grpc_helpers import request
    admin = windowed.admin
    bal = admin.GetBalance(pb.BalanceRequest(account_id="900002"), timeout=5)
    assert (bal.billing, bal.balance) == ("prepaid", 100)
    # 3 fen left, a segment costs 5: the submit is refused and nothing is debited
    admin.TopUp(pb.TopUpRequest(account_id="900002", amount=-97), timeout=5)
    resp = windowed.policy.Evaluate(request(account="900002", src_id="106900002", fee_code="10"), timeout=10)
    assert resp.submit_result == 15 and not resp.recipients
    assert admin.GetBalance(pb.BalanceRequest(account_id="900002"), timeout=5).balance == 3
    admin.TopUp(pb.TopUpRequest(account_id="900002", amount=-3), timeout=5)
    assert login(windowed, account="900002").status == 15
    # topped up again: login and submit pass, and the submit is debited per segment
    assert admin.TopUp(pb.TopUpRequest(account_id="900002", amount=50), timeout=5).balance == 50
    resp = windowed.policy.Evaluate(request(account="900002", src_id="106900002", fee_code="10"), timeout=10)
    assert resp.submit_result == 0 and resp.balance_after == 45
    assert login(windowed, account="900002").status == 0


def test_daemons_sharing_redis_hold_max_connections_across_all_of_them(tmp_path):
    """Front-ends behind several daemons (one Redis for their counters) may log in through any
    of them: 900001's 4 connections are counted across both, and a lease opened through one
    daemon is renewed and ended through the other."""
    with daemons_on_redis(tmp_path) as (proc, daemons):
        a, b = daemons
        opened = [login(daemons[i % 2]) for i in range(4)]
        assert [r.status for r in opened] == [0, 0, 0, 0]
        assert login(a).status == 21 and login(b).status == 21
        first = opened[0].session_id                        # opened through a
        assert b.policy.RenewSession(pb.SessionRequest(session_id=first, account_id="900001"), timeout=5).ok
        assert b.policy.EndSession(pb.SessionRequest(session_id=first), timeout=5).ok
        assert login(a).status == 0
        # the lease store gone: a login is refused as an internal error, a renewal says so and
        # the front-end keeps the connection (a refused renewal would close it)
        proc.kill()
        proc.wait(10)
        assert login(a).status == 100
        with pytest.raises(grpc.RpcError) as e:
            a.policy.RenewSession(pb.SessionRequest(session_id=opened[1].session_id), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "session store unavailable" in e.value.details()
