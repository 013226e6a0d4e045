"""Customer client -> front-end -> daemon -> forwarder -> simulator -> report -> customer,
all real processes on loopback, on a copy of the shipped rules pointed at the simulator.

The forwarder reads a second copy in which ch-ctcc takes no long SMS and ch-cucc is an HTTP
channel nobody listens on: the channel changed after the daemon's decision, which is exactly
when the forwarder's MO:200 and MO:201 happen (the daemon itself refuses with MA:0025 what it
knows a channel cannot carry).
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cmpp import V21, decode_content, parse_report
from policy.rules.loader import load_policy
from tests.forwarder.support import ForwarderProc
from tests.frontend.cmpp_client import DEMO_SIGNATURE, CmppClient, fresh_number, run
from tests.simulator.support import SimulatorProc
from tests.support.procs import REPO, SHIPPED_RULES, DaemonProc, Proc, free_port

SIG = DEMO_SIGNATURE
CUCC, CTCC = "1301234", "1331234"  # ch-cucc and ch-ctcc numbers for account 900001
_cucc = _ctcc = 0


def cucc_number() -> str:
    global _cucc
    _cucc += 1
    return f"{CUCC}{_cucc:04d}"


def ctcc_number() -> str:
    global _ctcc
    _ctcc += 1
    return f"{CTCC}{_ctcc:04d}"


def _rules_copy(target: Path, cmpp_port: int, http_port: int, forwarder_view: bool,
                dead_port: int) -> Path:
    shutil.copytree(SHIPPED_RULES, target, symlinks=True)
    path = target / "channels.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("port: 7891", f"port: {cmpp_port}")
    text = text.replace("http://127.0.0.1:7892/", f"http://127.0.0.1:{http_port}/")
    if forwarder_view:
        text, n = re.subn(r"(\n    secret: sim-ctcc\n)", r"\1    supports_long: false\n", text)
        text, m = re.subn(r"(  - id: ch-cucc\n(?:    .*\n)*?)    host: 127\.0\.0\.1\n    port: \d+\n",
                          rf"\1    protocol: http\n    http_url: http://127.0.0.1:{dead_port}/x\n",
                          text)
        assert n == 1 and m == 1, "the shipped channels.yaml changed shape; adapt this test"
    path.write_text(text, encoding="utf-8")
    return target


class Stack:
    def __init__(self, work: Path):
        self.work = work
        cmpp_port, http_port = free_port(), free_port()
        self.daemon_rules = _rules_copy(work / "rules", cmpp_port, http_port, False, 0)
        self.forwarder_rules = _rules_copy(work / "fwd-rules", cmpp_port, http_port, True,
                                           free_port())
        assert load_policy(self.forwarder_rules).channels["ch-cucc"].protocol == "http"
        self.sim = SimulatorProc(work / "sim", accounts="", http=True, port=cmpp_port,
                                 http_port=http_port,
                                 extra=["--rules", str(self.daemon_rules), "--report-delay", "0.1"])
        self.daemon = DaemonProc(work / "daemon", rules_dir=self.daemon_rules)
        self.data = work / "var"
        self.gateway_port = free_port()
        self.start_gateway()
        self.forwarder = ForwarderProc(work, self.forwarder_rules, self.data)

    def start_gateway(self) -> None:
        self.gateway = Proc(["gateway", "--listen", f"127.0.0.1:{self.gateway_port}", "--policy",
                             self.daemon.target, "--data", str(self.data)],
                            self.work / f"gateway-{time.time_ns()}.log",
                            {"SMSPOLICY_REPORT_RESEND": "1.0"})
        deadline = time.time() + 20
        while "CMPP gateway listening" not in self.gateway.output():
            if not self.gateway.alive() or time.time() > deadline:
                raise RuntimeError(f"gateway did not start:\n{self.gateway.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        for stop in (self.forwarder.stop, self.gateway.stop, self.daemon.stop, self.sim.stop):
            stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("e2e"))
    yield s
    s.stop()


@contextlib.asynccontextmanager
async def customer(stack, account: str = "900001", secret: str = "888888"):
    """A logged-in customer connection, closed however the test ends: a connection left open
    would stay a live session of the account and receive (and never acknowledge) reports."""
    client = await CmppClient.logged_in(stack.gateway_port, account, secret)
    try:
        yield client
    finally:
        await client.close()


async def _send(client: CmppClient, text: str, dest: str) -> list:
    """Submit `text` (as parts when long); the SUBMIT_RESPs."""
    if len(text) <= 70:
        return [await client.send_text(text, (dest,))]
    return [await client.request(p) for p in client.long_parts(text, ref=77, dests=(dest,))]


def _exchange(stack, items: list[tuple[str, str]], account: str = "900001",
              secret: str = "888888", timeout: float = 8.0) -> list[list[str]]:
    """Send each (text, dest) and return, per item, the Stat of each part's report."""
    async def go():
        async with customer(stack, account, secret) as client:
            sent = [await _send(client, text, dest) for text, dest in items]
            assert all(r.result == 0 for resps in sent for r in resps), sent
            reports = [[await client.report(r.msg_id, timeout) for r in resps] for resps in sent]
        return [[rep.stat for rep in part] for part in reports]
    return run(go(), timeout=30)


def test_delivered_and_undelivered(stack):
    assert _exchange(stack, [(f"{SIG}到货通知 #fault:stat=DELIVRD", fresh_number()),
                             (f"{SIG}到货通知 #fault:stat=UNDELIV", fresh_number())]) == \
        [["DELIVRD"], ["UNDELIV"]]


def test_upstream_failures_reach_the_customer_as_mo_codes(stack):
    got = _exchange(stack, [(f"{SIG}e2e #fault:result=13", fresh_number()),
                            (f"{SIG}e2e #fault:noresp", fresh_number()),
                            (f"{SIG}e2e #fault:drop", fresh_number())])
    assert got == [["MO:0013"], ["MO:0254"], ["MO:0255"]]


def test_six_character_mo_codes_reach_the_customer_nul_padded(stack):
    """MO:200 (long message, channel without long SMS) and MO:201 (HTTP channel failed) are
    6 characters; the 7-byte Stat carries them left-aligned, NUL-padded."""
    async def go():
        async with customer(stack) as client:
            long_resps = await _send(client, SIG + "长" * 80, ctcc_number())
            http_resps = await _send(client, f"{SIG}e2e http", cucc_number())
            return [await client.wait_deliver(
                lambda d, m=r.msg_id: d.registered_delivery == 1 and client.parse(d).msg_id == m,
                3) for r in long_resps + http_resps]
    delivers = run(go(), timeout=30)
    assert [d.msg_content[8:15] for d in delivers] == [b"MO:200\0"] * 2 + [b"MO:201\0"]


def test_long_message_is_resplit_for_the_upstream(stack):
    text = SIG + "".join(chr(0x4E00 + i) for i in range(150))
    before = len(stack.sim.submits())
    assert _exchange(stack, [(text, fresh_number())]) == [["DELIVRD"] * 3]
    parts = [s for s in stack.sim.submits(before) if s["concat"]]
    assert [len(p["text"]) for p in parts] == [67, 67, 22]
    assert "".join(p["text"] for p in parts) == text


def test_mo_reaches_the_account_owning_the_access_code(stack):
    async def go():
        async with customer(stack) as client:
            stack.sim.control("mo 100001 13912340000 1069000018 TD 退订")
            return await client.wait_deliver(lambda d: d.registered_delivery == 0, timeout=8)
    mo = run(go())
    assert (mo.src_terminal_id, mo.dest_id) == ("13912340000", "1069000018")
    assert decode_content(mo.msg_content, mo.msg_fmt) == "TD 退订"


def test_scheduled_messages_are_not_forwarded_before_their_at_time(stack):
    """定时短信: At_Time, relative (`...R`) or absolute (`YYMMDDhhmmsstnnp`, here in the
    platform's +8 h), is kept with the message; the forwarder hands it to the upstream no
    earlier, and the report follows. A message without At_Time beside them goes at once."""
    from datetime import datetime, timedelta, timezone
    plus8 = timezone(timedelta(hours=8))
    texts = [f"{SIG}定时 relative", f"{SIG}定时 absolute", f"{SIG}定时 none"]
    async def go():
        async with customer(stack) as client:
            now = time.monotonic()
            absolute = (datetime.now(plus8) + timedelta(seconds=3)).strftime("%y%m%d%H%M%S") + "032+"
            sent = [await client.send_text(texts[0], (fresh_number(),), at_time="000000000003000R"),
                    await client.send_text(texts[1], (fresh_number(),), at_time=absolute),
                    await client.send_text(texts[2], (fresh_number(),))]
            assert [r.result for r in sent] == [0, 0, 0], sent
            reports = {}
            for r in reversed(sent):   # the unscheduled one first: it must not wait
                rep = await client.report(r.msg_id, timeout=10)
                reports[r.msg_id] = (rep.stat, time.monotonic() - now)
            return [reports[r.msg_id] for r in sent], now
    got, started = run(go(), timeout=30)
    assert [stat for stat, _ in got] == ["DELIVRD"] * 3
    upstream = {rec["text"]: rec["received"] - started for rec in stack.sim.submits()
                if rec["text"] in texts}
    assert upstream[texts[2]] < 2.0, upstream
    assert upstream[texts[0]] >= 2.9 and upstream[texts[1]] >= 2.0, upstream   # absolute: whole seconds
    assert got[0][1] >= 2.9 and got[2][1] < 2.0, got


def test_a_malformed_at_time_gets_result_1_and_nothing_is_forwarded(stack):
    async def go():
        async with customer(stack) as client:
            return [await client.send_text(f"{SIG}定时 bad {i}", (fresh_number(),), at_time=bad)
                    for i, bad in enumerate(["2612081200", "261308120000032+", "26120812000003x+",
                                             "261208120000049+", "000000250000000R"])]
    resps = run(go())
    assert [r.result for r in resps] == [1] * 5
    time.sleep(0.5)
    assert not [s for s in stack.sim.submits() if "定时 bad" in s["text"]]


def _review(stack, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "policy", "review", "--data", str(stack.data),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_review_queue_approve_and_reject(stack):
    async def go():
        async with customer(stack, "900008", "audit-900008") as client:
            approve = await client.send_text("请审核 approve-me", ("13912349901",),
                                             src_id="106900008")
            reject = await client.send_text("请审核 reject-me", ("13912349902",),
                                            src_id="106900008")
            await asyncio.sleep(0.5)
            assert not client.reports()  # held: nothing final yet
            held = {r.msg_id: r.id for r in stack.forwarder.store.held_messages()}
            _review(stack, "approve", str(held[approve.msg_id]))
            _review(stack, "reject", str(held[reject.msg_id]))
            got = [await client.report(m.msg_id, 8) for m in (approve, reject)]
            await asyncio.sleep(0.3)
            return [g.stat for g in got], len(client.reports())
    stats, count = run(go())
    assert stats == ["DELIVRD", "MA:0006"] and count == 2


def test_kill_9_of_front_end_and_forwarder_mid_stream_loses_and_duplicates_nothing(stack):
    """Every SUBMIT answered with Result 0 ends with exactly one report, whatever dies."""
    async def send_batch(client, n, tag):
        accepted = []
        for i in range(n):
            try:
                resp = await client.send_text(f"{SIG}crash {tag} {i}", (fresh_number(),))
            except Exception:  # the front-end died under us: that SUBMIT is not owed
                break
            if resp.result == 0:
                accepted.append(resp.msg_id)
        return accepted

    async def go():
        async with customer(stack) as first:
            accepted = await send_batch(first, 15, "a")
            stack.forwarder.kill9()  # reports of these are now owed by a dead forwarder
            accepted += await send_batch(first, 10, "b")
            stack.gateway.kill()  # kill -9 of the front-end: the customer's link drops
        stack.forwarder.start()
        # restarted at once, within the second its predecessor issued ids in: none may repeat
        stack.start_gateway()
        async with customer(stack) as second:
            accepted += await send_batch(second, 5, "c")
            got_first = {first.parse(d).msg_id for d in first.delivers if d.registered_delivery}
            for msg_id in set(accepted) - got_first:
                await second.report(msg_id, timeout=15)
            await asyncio.sleep(1.0)  # duplicates would arrive now
        return accepted, first.delivers + second.delivers

    accepted, delivers = run(go(), timeout=60)
    assert len(accepted) >= 25
    per_msg: dict[int, set] = {}
    for d in delivers:
        if d.registered_delivery == 1:
            report = parse_report(d, V21)
            per_msg.setdefault(report.msg_id, set()).add((d.msg_id, report.stat))
    assert set(per_msg) == set(accepted)
    # a DELIVER may come twice (same DELIVER Msg_Id) when its DELIVER_RESP was lost in the
    # crash; a second, different DELIVER for one message would be a duplicate report
    duplicated = {k: v for k, v in per_msg.items() if len(v) > 1}
    assert not duplicated
    assert {stat for v in per_msg.values() for _, stat in v} == {"DELIVRD"}
