"""What needs a daemon of its own: rules edited for the time of day, a balance used up, the API
blacklist changed, and a daemon that stalls or dies (Result 8, nothing stored or forwarded)."""
import asyncio
import os
import signal
import sqlite3
import time
from datetime import datetime

import pytest

from tests.frontend.cmpp_client import (
    DEMO_SIGNATURE, PLATFORM_TZ, CmppClient, fresh_number, run,
)
from tests.support.procs import DaemonProc, copy_rules
from tests.support.redis import daemons_on_redis

TEXT = DEMO_SIGNATURE + "自有守护进程"


@pytest.fixture(scope="module")
def own(tmp_path_factory, make_module_gateway):
    work = tmp_path_factory.mktemp("own-daemon")
    rules = copy_rules(work)
    hour = datetime.now(PLATFORM_TZ).hour
    closed = f'"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"'   # a window that excludes now
    accounts = rules / "accounts.yaml"
    text = accounts.read_text(encoding="utf-8")
    edited = (text.replace('login_window: "09:00-18:00"', f"login_window: {closed}")
                  .replace('send_window: "08:00-20:00"', f"send_window: {closed}"))
    assert edited.count(closed) == 2, "the shipped 900012 / 900013 windows moved"
    accounts.write_text(edited, encoding="utf-8")
    daemon = DaemonProc(work, rules_dir=rules)
    gateway = make_module_gateway(daemon.target, policy_timeout=1.0)
    yield daemon, gateway
    gateway.stop()
    if daemon.proc.alive():
        os.kill(daemon.proc.popen.pid, signal.SIGCONT)
    daemon.stop()


async def login_status(port, account, secret):
    client = await CmppClient.open(port)
    try:
        return (await client.login(account, secret)).status
    finally:
        await client.close()


def outbox_count(g):
    with sqlite3.connect(g.store_path) as db:
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0]


def test_login_outside_the_login_window_gets_16(own):
    _, g = own
    assert run(login_status(g.port, "900012", "login-900012")) == 16


def test_submit_outside_the_send_window_gets_16(own):
    _, g = own
    async def go():
        client = await CmppClient.logged_in(g.port, "900013", "send-900013")
        resp = await client.send_text("窗口外", (fresh_number(),), src_id="106900013")
        await client.close()
        return resp.result
    assert run(go()) == 16


def test_api_blacklist_gives_ma0039(own):
    from policy.api.v1 import policy_pb2 as pb
    daemon, g = own
    number = fresh_number()
    daemon.admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(add=[number]), timeout=5)
    async def go():
        client = await CmppClient.logged_in(g.port)
        resp = await client.send_text(TEXT, (number,))
        report = await client.report(resp.msg_id)
        await client.close()
        return report.stat
    assert run(go()) == "MA:0039"


def test_used_up_prepaid_balance_gives_15_at_submit_and_at_login(own):
    _, g = own
    async def go():
        client = await CmppClient.logged_in(g.port, "900002", "pre-900002")
        numbers = tuple(fresh_number() for _ in range(20))      # 20 segments at 5 fen = 100
        spend = await client.send_text("余额", numbers, src_id="106900002", fee_code="000000")
        broke = await client.send_text("余额", (fresh_number(),), src_id="106900002",
                                       fee_code="000000")
        await client.close()
        return spend.result, broke.result, await login_status(g.port, "900002", "pre-900002")
    assert run(go()) == (0, 15, 15)


def test_window_overflow_and_a_stalled_daemon_give_result_8(own):
    daemon, g = own
    before = outbox_count(g)

    async def go():
        client = await CmppClient.logged_in(g.port)
        loop = asyncio.get_running_loop()
        os.kill(daemon.proc.popen.pid, signal.SIGSTOP)
        try:
            packets = [client.submit_packet(TEXT, (fresh_number(),)) for _ in range(17)]
            started = loop.time()
            waiting = [asyncio.ensure_future(client.request(p)) for p in packets[:16]]
            await asyncio.sleep(0.1)
            over = await client.request(packets[16])
            over_after = loop.time() - started
            stalled = await asyncio.gather(*waiting)
            stalled_after = loop.time() - started
        finally:
            os.kill(daemon.proc.popen.pid, signal.SIGCONT)
        await client.close()
        return over, over_after, stalled, stalled_after
    over, over_after, stalled, stalled_after = run(go())
    assert over.result == 8 and over_after < 0.8          # at once, not after policy_timeout
    assert {r.result for r in stalled} == {8} and stalled_after >= 1.0
    assert outbox_count(g) == before                      # nothing went out unchecked


def test_daemon_down_gives_8_and_100_then_recovers(own):
    daemon, g = own
    async def go():
        client = await CmppClient.logged_in(g.port)
        daemon.proc.kill()
        daemon.channel.close()
        down = await client.send_text(TEXT, (fresh_number(),))
        login = await login_status(g.port, "900001", "888888")
        await asyncio.get_running_loop().run_in_executor(None, daemon.start)
        deadline = time.monotonic() + 5
        while True:
            back = await client.send_text(TEXT, (fresh_number(),))
            if back.result == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        await client.close()
        return down.result, login, back.result
    assert run(go(), 60) == (8, 100, 0)


def test_a_front_end_over_two_daemons_keeps_serving_when_one_dies(tmp_path, make_gateway):
    """policy_target names two daemons sharing Redis: logins and submits go through both, and
    with one killed the front-end answers through the other (no Result 8 once it noticed)."""
    with daemons_on_redis(tmp_path) as (_, daemons):
        g = make_gateway(f"ipv4:{daemons[0].target},{daemons[1].target}", policy_timeout=2.0)

        async def go():
            client = await CmppClient.logged_in(g.port)
            both = [await client.send_text(TEXT, (fresh_number(),)) for _ in range(10)]
            on_a = logged(0)
            daemons[0].proc.kill()
            daemons[0].channel.close()
            await asyncio.sleep(0.5)
            after = [await client.send_text(TEXT, (fresh_number(),)) for _ in range(10)]
            relogin = await login_status(g.port, "900001", "888888")
            await client.close()
            return both, on_a, after, relogin

        def logged(i: int) -> int:   # decisions in daemon i's own log (committed before answers)
            with sqlite3.connect(daemons[i].data_dir / f"decisions-{'ab'[i]}.db") as db:
                return db.execute("SELECT count(*) FROM decisions").fetchone()[0]
        both, on_a, after, relogin = run(go())
        assert [r.result for r in both] == [0] * 10
        assert 0 < on_a < 10, on_a                          # both daemons took calls
        assert [r.result for r in after] == [0] * 10
        assert relogin == 0
        assert logged(0) == on_a and logged(1) == 20 - on_a
