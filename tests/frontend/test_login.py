"""Login through the daemon: every CONNECT_RESP status the shipped rules can give, end to end.

(15 and 16 need a daemon whose state or rules a test changes: test_own_daemon.py.)
"""
import asyncio
import struct

import pytest

from gateway.cmpp import (
    V20, V21, V30, Connect, Submit, authenticator_ismg, authenticator_source, encode,
)
from tests.frontend.cmpp_client import (
    DEMO_ACCOUNT, DEMO_SECRET, PLATFORM_TZ, CmppClient, fresh_number, fresh_timestamp, run,
)
from tests.support.procs import free_port


async def status_of(port, account, secret, layout=V21, **kw):
    """The CONNECT_RESP Status; `layout` is the version the client reads responses in."""
    client = await CmppClient.open(port, layout, local_addr=kw.pop("local_addr", None))
    try:
        return (await client.login(account, secret, **kw)).status
    finally:
        await client.close()


def test_demo_account_logs_in_and_gets_a_correct_authenticator(gateway):
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        ts = fresh_timestamp(DEMO_ACCOUNT)
        auth = authenticator_source(DEMO_ACCOUNT, DEMO_SECRET, ts)
        writer.write(encode(Connect(1, DEMO_ACCOUNT, auth, V21, ts), V21))
        raw = await reader.readexactly(30)          # the 2.x CONNECT_RESP is 30 bytes
        writer.close()
        return raw, auth
    raw, auth = run(go())
    assert struct.unpack(">III", raw[:12]) == (30, 0x80000001, 1)
    assert raw[12] == 0                              # Status, one byte
    assert raw[13:29] == authenticator_ismg(0, auth, DEMO_SECRET, V21)
    assert raw[29] == V21                            # we speak the customer's version


def test_cmpp30_account_is_answered_in_the_3_0_layout(gateway):
    async def go():
        client = await CmppClient.open(gateway.port, V30)
        ts = fresh_timestamp("900011")
        resp = await client.login("900011", "cmpp30-900011", timestamp=ts)
        await client.close()
        return resp, authenticator_source("900011", "cmpp30-900011", ts)
    resp, auth = run(go())
    assert resp.status == 0
    assert resp.authenticator_ismg == authenticator_ismg(0, auth, "cmpp30-900011", V30)


def test_malformed_connect_gets_status_1_and_the_connection_is_closed(gateway):
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        body = b"900001" + bytes(16) + bytes([V21]) + b"\0\0\0"   # 26 bytes, one short
        writer.write(struct.pack(">III", 12 + len(body), 1, 7) + body)
        raw = await reader.read(100)
        rest = await reader.read(100)
        writer.close()
        return raw, rest
    raw, rest = run(go())
    assert struct.unpack(">III", raw[:12]) == (30, 0x80000001, 7) and raw[12] == 1
    assert raw[13:29] == bytes(16)
    assert rest == b""


def test_wrong_address_gets_status_2(gateway):
    assert run(status_of(gateway.port, DEMO_ACCOUNT, DEMO_SECRET,
                         local_addr=("127.0.0.2", 0))) == 2


@pytest.mark.parametrize("case", ["wrong secret", "unknown account", "stale timestamp",
                                  "future timestamp"])
def test_authentication_failures_get_status_3(gateway, case):
    from datetime import datetime, timedelta
    from gateway.cmpp import timestamp_now

    async def go():
        if case == "wrong secret":
            return await status_of(gateway.port, DEMO_ACCOUNT, "888889")
        if case == "unknown account":
            return await status_of(gateway.port, "999999", "x")
        if case in ("stale timestamp", "future timestamp"):
            shift = timedelta(minutes=-30 if case.startswith("stale") else 30)
            ts = timestamp_now(datetime.now(PLATFORM_TZ) + shift)
            return await status_of(gateway.port, DEMO_ACCOUNT, DEMO_SECRET, timestamp=ts)
    assert run(go()) == 3


def test_version_not_enabled_gets_status_4_in_the_layout_the_client_reads(gateway):
    # 900001 is CMPP 2.x only: a 3.0 CONNECT is refused, and answered with a 4-byte Status
    assert run(status_of(gateway.port, DEMO_ACCOUNT, DEMO_SECRET, V30)) == 4
    # an unknown version byte is answered in the 2.x layout
    assert run(status_of(gateway.port, DEMO_ACCOUNT, DEMO_SECRET, V20, version=0x10)) == 4


def test_second_connect_on_a_logged_in_connection_gets_status_5(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        again = await client.login(DEMO_ACCOUNT, DEMO_SECRET)
        still = await client.send_text("【云信科技】还在", (fresh_number(),))
        await client.close()
        return again.status, still.result
    assert run(go()) == (5, 0)


@pytest.mark.parametrize("account,secret,status", [
    ("900004", "http-900004-secret", 6),   # an HTTP account over CMPP: wrong access point
    ("900003", "off-900003", 7),           # disabled
])
def test_account_settings_refuse_the_login(gateway, account, secret, status):
    assert run(status_of(gateway.port, account, secret)) == status


def test_too_many_connections_get_status_21_until_one_closes(gateway):
    async def go():
        first = await CmppClient.logged_in(gateway.port, "900016", "alerts-900016")
        second = await status_of(gateway.port, "900016", "alerts-900016")
        await first.close()
        await asyncio.sleep(0.3)  # the front-end ends the lease when it sees the close
        third = await status_of(gateway.port, "900016", "alerts-900016")
        return second, third
    assert run(go()) == (21, 0)


def test_daemon_unreachable_gets_status_100(make_gateway):
    g = make_gateway(f"127.0.0.1:{free_port()}")   # nothing listens there
    assert run(status_of(g.port, DEMO_ACCOUNT, DEMO_SECRET)) == 100


def test_nothing_but_connect_before_login(gateway):
    async def go():
        client = await CmppClient.open(gateway.port)
        client.send(Submit(1, msg_content=b"x", dest_terminal_ids=("13912345678",)))
        return await client.closed(3)
    assert run(go())
