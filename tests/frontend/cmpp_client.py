"""A small but real CMPP client (asyncio, built on gateway.cmpp) for the front-end's tests.

It frames what it reads across TCP splits, matches responses to requests by Sequence_Id,
answers ACTIVE_TEST and TERMINATE, and collects every DELIVER (answering DELIVER_RESP unless
told not to), so a test reads like a customer's session.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.cmpp import (
    V21, ActiveTest, ActiveTestResp, ConnectResp, Deliver, DeliverResp, Framer, Submit,
    SubmitResp, Terminate, TerminateResp, authenticator_source, encode, parse_report,
    split_ucs2, timestamp_now,
)
from gateway.cmpp import Connect

DEMO_ACCOUNT, DEMO_SECRET, DEMO_SRC = "900001", "888888", "106900001"
DEMO_SIGNATURE = "【云信科技】"
PLATFORM_TZ = ZoneInfo("Asia/Shanghai")   # rules/platform.yaml: CONNECT timestamps are read in it
_used_seconds: dict[str, set[int]] = {}


_numbers = itertools.count(1)


def fresh_number() -> str:
    """An accepted destination (CMCC, Jiangsu) not used before in this run: the demo account's
    limits (20 per number per hour, 5 of one content) must not turn tests' messages into
    MA:0022 / MA:0042 reports."""
    return f"1391234{next(_numbers):04d}"


def run(coro, timeout: float = 30.0):
    """Run one test's conversation on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def fresh_timestamp(account: str, zone: ZoneInfo = PLATFORM_TZ) -> int:
    """A CONNECT Timestamp in the platform's zone (`zone` for a daemon on rules of another
    zone), never the same twice for an account: the daemon refuses a repeated
    AuthenticatorSource as a replayed login. Takes the current second, or the latest one
    before it not handed out yet (the daemon allows 300 s of skew)."""
    used = _used_seconds.setdefault(account, set())
    second = int(time.time())
    while second in used:
        second -= 1
    used.add(second)
    return timestamp_now(datetime.fromtimestamp(second, zone))


def claim_current_second(account: str) -> None:
    """For clients that stamp CONNECT with the current time themselves (pycmpp): wait until
    the current second is unused, then keep it (and the next, should the client's clock tick
    over meanwhile) from fresh_timestamp."""
    used = _used_seconds.setdefault(account, set())
    while int(time.time()) in used or int(time.time()) + 1 in used:
        time.sleep(0.05)
    used.update((int(time.time()), int(time.time()) + 1))


class ServerClosed(Exception):
    pass


class CmppClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int):
        self.reader, self.writer, self.version = reader, writer, version
        self.account = DEMO_ACCOUNT
        self.framer = Framer(version)
        self.auto_ack = True
        self.answer_active_test = True
        self.delivers: list[Deliver] = []
        self.active_tests = 0
        self.terminated_by_server = False
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._new_deliver = asyncio.Event()
        self._closed = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, port: int, version: int = V21, host: str = "127.0.0.1",
                   local_addr: tuple[str, int] | None = None) -> "CmppClient":
        reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
        return cls(reader, writer, version)

    @classmethod
    async def logged_in(cls, port: int, account: str = DEMO_ACCOUNT, secret: str = DEMO_SECRET,
                        version: int = V21) -> "CmppClient":
        client = await cls.open(port, version)
        resp = await client.login(account, secret)
        assert resp.status == 0, f"login of {account} refused with {resp.status}"
        return client

    # ------------------------------------------------------------------ requests
    def next_seq(self) -> int:
        return next(self._seq)

    async def request(self, packet, timeout: float = 5.0):
        fut = asyncio.get_running_loop().create_future()
        self._waiting[packet.sequence_id] = fut
        self.send(packet)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            self._waiting.pop(packet.sequence_id, None)

    def send(self, packet) -> None:
        self.writer.write(encode(packet, self.version))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def login(self, account: str, secret: str, version: int | None = None,
                    timestamp: int | None = None, auth: bytes | None = None) -> ConnectResp:
        self.account = account
        ts = fresh_timestamp(account) if timestamp is None else timestamp
        auth = authenticator_source(account, secret, ts) if auth is None else auth
        return await self.request(Connect(self.next_seq(), account, auth,
                                          self.version if version is None else version, ts))

    async def submit(self, timeout: float = 5.0, **fields) -> SubmitResp:
        return await self.request(Submit(self.next_seq(), **fields), timeout)

    def submit_packet(self, text: str = "", dests=("13912345678",), src_id: str = DEMO_SRC,
                      registered_delivery: int = 1, content: bytes | None = None,
                      msg_fmt: int = 8, **fields) -> Submit:
        """A single SUBMIT of `text` in UCS2 (or raw `content`)."""
        body = text.encode("utf-16-be") if content is None else content
        return Submit(self.next_seq(), registered_delivery=registered_delivery, msg_fmt=msg_fmt,
                      msg_src=self.account, src_id=src_id, dest_terminal_ids=tuple(dests),
                      msg_content=body, **fields)

    async def send_text(self, text: str, dests=("13912345678",), **fields) -> SubmitResp:
        return await self.request(self.submit_packet(text, dests, **fields))

    def long_parts(self, text: str, ref: int, dests=("13912345678",), src_id: str = DEMO_SRC,
                   registered_delivery: int = 1, tp_udhi: int = 1, **fields) -> list[Submit]:
        parts = split_ucs2(text, ref)
        assert len(parts) > 1, "text fits one SMS"
        return [Submit(self.next_seq(), pk_total=len(parts), pk_number=i,
                       registered_delivery=registered_delivery, tp_udhi=tp_udhi, msg_fmt=8,
                       msg_src=self.account, src_id=src_id, dest_terminal_ids=tuple(dests),
                       msg_content=body, **fields)
                for i, body in enumerate(parts, 1)]

    async def terminate(self, timeout: float = 5.0) -> TerminateResp:
        return await self.request(Terminate(self.next_seq()), timeout)

    # ------------------------------------------------------------------ what the server sends
    async def wait_deliver(self, predicate, timeout: float = 5.0) -> Deliver:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for d in self.delivers:
                if predicate(d):
                    return d
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed.done():
                raise TimeoutError(f"no matching DELIVER within {timeout} s "
                                   f"(got {len(self.delivers)})")
            self._new_deliver.clear()
            try:
                await asyncio.wait_for(self._new_deliver.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def report(self, msg_id: int, timeout: float = 5.0):
        """The status report for Msg_Id `msg_id` (its StatusReport)."""
        d = await self.wait_deliver(
            lambda d: d.registered_delivery == 1 and self.parse(d).msg_id == msg_id, timeout)
        return self.parse(d)

    def reports(self) -> list:
        return [self.parse(d) for d in self.delivers if d.registered_delivery == 1]

    def parse(self, d: Deliver):
        return parse_report(d, self.version)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the server closed the connection (within `timeout`)."""
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        self._reader_task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.framer.feed(data)
                for packet in self.framer:
                    self._on_packet(packet)
        except (ConnectionError, OSError):
            pass
        finally:
            if not self._closed.done():
                self._closed.set_result(None)
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ServerClosed("connection closed by the server"))

    def _on_packet(self, packet) -> None:
        kind = type(packet)
        if kind is Deliver:
            self.delivers.append(packet)
            self._new_deliver.set()
            if self.auto_ack:
                self.send(DeliverResp(packet.sequence_id, packet.msg_id, 0))
        elif kind is ActiveTest:
            self.active_tests += 1
            if self.answer_active_test:
                self.send(ActiveTestResp(packet.sequence_id))
        elif kind is Terminate:
            self.terminated_by_server = True
            self.send(TerminateResp(packet.sequence_id))
        else:
            fut = self._waiting.get(packet.sequence_id)
            if fut is not None and not fut.done():
                fut.set_result(packet)

