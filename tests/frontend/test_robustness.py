"""Bad input, silent and slow peers: each is answered or its connection closed, and the server
and every other connection carry on."""
import asyncio
import socket
import struct
import time
from datetime import datetime

import pytest

from gateway.cmpp import V21, ActiveTest, Connect, Query, authenticator_source, encode
from tests.frontend.cmpp_client import (
    DEMO_ACCOUNT, DEMO_SECRET, DEMO_SIGNATURE, PLATFORM_TZ, CmppClient, fresh_number,
    fresh_timestamp, run,
)

TEXT = DEMO_SIGNATURE + "健壮性"


async def still_serving(port) -> bool:
    client = await CmppClient.logged_in(port)
    resp = await client.send_text(TEXT, (fresh_number(),))
    await client.close()
    return resp.result == 0


def header(total, cmd, seq=1):
    return struct.pack(">III", total, cmd, seq)


@pytest.mark.parametrize("before_login", [True, False], ids=["before-login", "logged-in"])
@pytest.mark.parametrize("junk", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",      # garbage: Total_Length 0x47455420
    header(0, 4),                               # a 0-length frame
    header(8, 4),                               # shorter than its own header
    header(1 << 20, 4),                         # oversized: closed before the body arrives
    header(12, 0x00000077),                     # unknown Command_Id
    header(12, 0x00000009),                     # CMPP_FWD: not on an SP link
], ids=["garbage", "zero-length", "short", "oversized", "unknown-command", "fwd"])
def test_bad_frames_close_only_their_connection(gateway, junk, before_login):
    async def go():
        bystander = await CmppClient.logged_in(gateway.port)
        client = await (CmppClient.open(gateway.port) if before_login
                        else CmppClient.logged_in(gateway.port))
        client.send_raw(junk)
        closed = await client.closed(3)
        alive = (await bystander.send_text(TEXT, (fresh_number(),))).result == 0
        await bystander.close()
        return closed, alive, await still_serving(gateway.port)
    assert run(go()) == (True, True, True)


def test_malformed_submit_is_answered_with_result_1_and_the_connection_stays(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        frame = encode(client.submit_packet(TEXT, (fresh_number(),)), V21)
        bad = header(len(frame) - 3, 4, 99) + frame[12:-3]      # cut into the Reserve field
        client.send_raw(bad)
        fut = asyncio.get_running_loop().create_future()
        client._waiting[99] = fut
        resp = await asyncio.wait_for(fut, 3)
        ok = await client.send_text(TEXT, (fresh_number(),))
        await client.close()
        return resp, ok
    resp, ok = run(go())
    assert (resp.msg_id, resp.result) == (0, 1)
    assert ok.result == 0


def test_packets_split_byte_by_byte_are_reassembled(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        packet = client.submit_packet(TEXT, (fresh_number(),))
        fut = asyncio.get_running_loop().create_future()
        client._waiting[packet.sequence_id] = fut
        for byte in encode(packet, V21):
            client.send_raw(bytes([byte]))
            await client.writer.drain()
        resp = await asyncio.wait_for(fut, 3)
        await client.close()
        return resp
    assert run(go()).result == 0


def test_half_a_packet_then_silence_is_closed_after_t(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        frame = encode(client.submit_packet(TEXT, (fresh_number(),)), V21)
        client.send_raw(frame[:40])
        return await client.closed(4)      # response_timeout is 1 s in the tests
    assert run(go())


def test_connection_without_connect_is_closed_after_t(gateway):
    async def go():
        client = await CmppClient.open(gateway.port)
        return await client.closed(4)
    assert run(go())


def test_active_test_is_answered_and_query_counts(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        pong = await client.request(ActiveTest(client.next_seq()))
        q = await client.request(Query(client.next_seq(),
                                       datetime.now(PLATFORM_TZ).strftime("%Y%m%d")))
        await client.close()
        return pong, q
    pong, q = run(go())
    assert pong.reserved == 0
    assert q.mt_tlmsg > 0          # earlier tests of this module submitted


def test_query_type_1_counts_only_the_service_in_query_code(gateway):
    """Query_Type 1: the figures of the Service_Id in Query_Code (cmpp.md §8), not the
    account's totals."""
    mine, other = (f"{p}{time.time_ns() % 10**8:08d}" for p in ("qa", "qb"))
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        sent = [await client.send_text(TEXT, (fresh_number(),), service_id=mine),
                await client.send_text(TEXT, (fresh_number(), fresh_number()), service_id=mine),
                await client.send_text(TEXT, (fresh_number(),), service_id=other),
                await client.send_text(TEXT, ("13900000001",), service_id=other)]   # MA:0001
        day = datetime.now(PLATFORM_TZ).strftime("%Y%m%d")
        answers = [await client.request(Query(client.next_seq(), day, t, code, ""))
                   for t, code in ((0, ""), (1, mine), (1, other), (1, "nosuch"))]
        await client.close()
        return sent, answers
    sent, (total, q_mine, q_other, q_none) = run(go())
    assert [r.result for r in sent] == [0, 0, 0, 0]
    assert total.mt_tlmsg >= 5
    assert (q_mine.query_type, q_mine.query_code) == (1, mine)
    assert (q_mine.mt_tlmsg, q_mine.mt_tlusr, q_mine.mt_fl) == (3, 3, 0)
    assert (q_other.mt_tlmsg, q_other.mt_tlusr, q_other.mt_fl) == (2, 2, 1)
    assert (q_none.mt_tlmsg, q_none.mt_tlusr, q_none.mt_scs, q_none.mt_wt, q_none.mt_fl) == (
        0, 0, 0, 0, 0)


def test_terminate_answers_what_is_in_flight_first(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        packets = [client.submit_packet(TEXT, (fresh_number(),)) for _ in range(5)]
        futs = []
        for p in packets:
            futs.append(asyncio.get_running_loop().create_future())
            client._waiting[p.sequence_id] = futs[-1]
            client.send(p)
        bye = await client.terminate()
        results = [f.result().result for f in futs if f.done()]
        closed = await client.closed(3)
        return bye, results, closed
    bye, results, closed = run(go())
    assert results == [0] * 5 and closed


def test_keepalive_active_test_then_close_after_n_unanswered(daemon, make_gateway):
    g = make_gateway(daemon.target, active_test_interval=0.5, response_timeout=0.5, retries=2)
    async def go():
        polite = await CmppClient.logged_in(g.port)
        rude = await CmppClient.logged_in(g.port)
        rude.answer_active_test = False
        rude_closed = await rude.closed(5)
        polite_open = not await polite.closed(0.5)
        await polite.close()
        return polite.active_tests, rude.active_tests, rude_closed, polite_open
    polite_tests, rude_tests, rude_closed, polite_open = run(go())
    assert polite_tests >= 2 and rude_tests == 2
    assert rude_closed and polite_open


def test_silent_client_is_closed_after_idle_timeout(daemon, make_gateway):
    g = make_gateway(daemon.target, idle_timeout=1)
    async def go():
        client = await CmppClient.logged_in(g.port)
        return await client.closed(4)
    assert run(go())


def test_client_that_does_not_read_is_closed(daemon, make_gateway):
    g = make_gateway(daemon.target, response_timeout=1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # a small window, never read
    sock.connect(("127.0.0.1", g.port))
    ts = fresh_timestamp(DEMO_ACCOUNT)
    sock.sendall(encode(Connect(1, DEMO_ACCOUNT, authenticator_source(DEMO_ACCOUNT, DEMO_SECRET, ts),
                                V21, ts), V21))
    assert sock.recv(30)[12] == 0
    burst = b"".join(encode(ActiveTest(i), V21) for i in range(2000))   # 13-byte answers each
    sock.settimeout(3)
    deadline = time.time() + 15
    with pytest.raises((ConnectionError, socket.timeout)):
        while time.time() < deadline:
            sock.sendall(burst)
    sock.close()
    assert "not reading what we send" in g.proc.output()


def test_shutdown_sends_terminate(daemon, make_gateway):
    g = make_gateway(daemon.target)
    async def go():
        client = await CmppClient.logged_in(g.port)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, g.stop)
        return client.terminated_by_server, await client.closed(1)
    assert run(go()) == (True, True)
