"""Connection leases across a daemon restart: max_connections still holds.

The daemon keeps leases in memory, so a restarted daemon knows none of the connections that
stayed open at the front-ends. Their next RenewSession (with the account id) takes each lease
back while the account has room; a connection whose slot a new login took meanwhile is closed
by its front-end with TERMINATE, since a connection without a lease would break the limit.
900016 allows one connection. The front-end renews every third of the lease.
"""
import asyncio
import time

import pytest

from gateway.cmpp.auth import authenticator_source
from policy.api.v1 import policy_pb2 as pb
from tests.frontend.cmpp_client import CmppClient, fresh_timestamp, run
from tests.support.procs import DaemonProc

ACCOUNT, SECRET = "900016", "alerts-900016"   # rules/accounts.yaml: max_connections 1
LEASE = 3        # renewals every second: one comes soon after the daemon is back
SLOW_LEASE = 30  # renewals every 10 s: a login right after the restart comes first


@pytest.fixture
def leased(request, tmp_path, make_gateway):
    lease = getattr(request, "param", LEASE)
    daemon = DaemonProc(tmp_path / "daemon", env={"SMSPOLICY_SESSION_LEASE_SECONDS": str(lease)})
    yield daemon, make_gateway(daemon.target)
    daemon.stop()


def direct_login(daemon) -> int:
    """A login of another front-end, straight to the daemon: its CONNECT_RESP Status."""
    ts = fresh_timestamp(ACCOUNT)
    resp = daemon.policy.Login(pb.LoginRequest(
        account_id=ACCOUNT, authenticator_source=authenticator_source(ACCOUNT, SECRET, ts),
        timestamp=ts, version=0x21, peer_ip="127.0.0.1", access_mode=pb.ACCESS_MODE_CMPP,
        frontend_id="tests"), timeout=10)
    if resp.status == 0:
        daemon.policy.EndSession(pb.SessionRequest(session_id=resp.session_id), timeout=5)
    return resp.status


def test_an_open_connection_takes_its_lease_back_after_a_daemon_restart(leased):
    daemon, gateway = leased

    async def go():
        client = await CmppClient.logged_in(gateway.port, ACCOUNT, SECRET)
        try:
            held = await asyncio.to_thread(direct_login, daemon)
            await asyncio.to_thread(daemon.restart)
            # the front-end renews every LEASE/3 s: after two periods its lease is back
            await asyncio.sleep(2 * LEASE / 3 + 1)
            after = await asyncio.to_thread(direct_login, daemon)
            closed = await client.closed(timeout=0.5)
            return held, after, closed
        finally:
            await client.close()

    held, after, closed = run(go())
    assert held == 21                   # the connection holds the account's only slot
    assert after == 21, "the restarted daemon let a second connection in"
    assert not closed                   # and the connection that holds it stays open


@pytest.mark.parametrize("leased", [SLOW_LEASE], indirect=True)
def test_a_connection_whose_slot_was_taken_meanwhile_is_terminated(leased):
    daemon, gateway = leased

    async def go():
        client = await CmppClient.logged_in(gateway.port, ACCOUNT, SECRET)
        try:
            await asyncio.to_thread(daemon.restart)
            # before the front-end's next renewal: a new login finds the slot free and takes it
            ts = fresh_timestamp(ACCOUNT)
            other = await asyncio.to_thread(daemon.policy.Login, pb.LoginRequest(
                account_id=ACCOUNT, authenticator_source=authenticator_source(ACCOUNT, SECRET, ts),
                timestamp=ts, version=0x21, peer_ip="127.0.0.1", access_mode=pb.ACCESS_MODE_CMPP,
                frontend_id="tests"), timeout=10)
            closed = await client.closed(timeout=SLOW_LEASE / 3 + 5)
            return other.status, closed, client.terminated_by_server
        finally:
            await client.close()

    status, closed, terminated = run(go(), timeout=60)
    assert status == 0
    assert closed and terminated, "the connection without a lease was left open"


def test_renewing_an_unknown_session_without_an_account_is_refused(leased):
    daemon, _ = leased
    assert not daemon.policy.RenewSession(pb.SessionRequest(session_id="nope"), timeout=5).ok
    # with an account that has room the lease is taken (the front-end's connection counts) ...
    assert daemon.policy.RenewSession(pb.SessionRequest(session_id="s1", account_id=ACCOUNT),
                                      timeout=5).ok
    assert direct_login(daemon) == 21
    # ... but never beyond the account's limit, nor for an account the rules do not hold
    assert not daemon.policy.RenewSession(pb.SessionRequest(session_id="s2", account_id=ACCOUNT),
                                          timeout=5).ok
    assert not daemon.policy.RenewSession(pb.SessionRequest(session_id="s3", account_id="999999"),
                                          timeout=5).ok
    assert daemon.policy.EndSession(pb.SessionRequest(session_id="s1"), timeout=5).ok
    assert direct_login(daemon) == 0
