"""One CMPP connection from the forwarder to a channel's upstream SMSC.

Connect, log in (and check the SMSC's AuthenticatorISMG), keep the link alive with ACTIVE_TEST
when it is idle, count SUBMITs in flight against the window, time them out, answer DELIVERs.
What a SUBMIT_RESP, a timeout or a DELIVER means for the outbox is the owner's business
(`LinkOwner`); this module only knows CMPP.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from typing import Any, Protocol

from gateway.cmpp import (
    ActiveTest, ActiveTestResp, CmppDecodeError, Connect, ConnectResp, Deliver, DeliverResp, Framer,
    Submit, SubmitResp, Terminate, TerminateResp, authenticator_ismg, authenticator_source, encode,
    timestamp_now,
)

from .codes import LINK_LOST, UPSTREAM_TIMEOUT

log = logging.getLogger("gateway.forwarder.link")


class LoginRefused(Exception):
    pass


class LinkOwner(Protocol):
    def submit_answered(self, token: Any, resp: SubmitResp) -> None: ...
    def submit_failed(self, token: Any, stat: str) -> None: ...
    # DELIVER_RESP Result, or None to leave it unanswered (the upstream will send it again)
    def deliver(self, link: "Link", packet: Deliver) -> int | None: ...
    def link_changed(self) -> None: ...  # ready or window state changed


@dataclasses.dataclass(frozen=True)
class LinkConfig:
    host: str
    port: int
    account: str
    secret: str
    version: int
    window: int
    submit_timeout: float  # no SUBMIT_RESP within it -> MO:0254
    idle_interval: float  # ACTIVE_TEST after this long without traffic (C)
    response_timeout: float  # T
    retries: int  # N: the link is dead after C + N*T without a packet
    connect_timeout: float = 10.0


class Link:
    def __init__(self, config: LinkConfig, owner: LinkOwner, name: str):
        self.config = config
        self.owner = owner
        self.name = name
        self.version = config.version
        self.ready = False
        self.logged_in = False  # set at each successful login; the owner resets it
        self._inflight: dict[int, tuple[Any, float]] = {}  # Sequence_Id -> (token, deadline)
        self._seq = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._closing = False

    @property
    def free(self) -> int:
        return self.config.window - len(self._inflight) if self.ready else 0

    def _next_seq(self) -> int:
        seq = next(self._seq)
        if seq > 0xFFFFFFFF:
            self._seq = itertools.count(2)
            seq = 1
        return seq

    def _write(self, packet) -> None:
        self._writer.write(encode(packet, self.version))

    def submit(self, packet: Submit, token: Any) -> None:
        """Send now (the caller checked `free`); the owner hears of it exactly once, through
        submit_answered or submit_failed. CmppEncodeError (nothing sent) if a field does not
        fit this link's CMPP version."""
        seq = self._next_seq()
        frame = encode(dataclasses.replace(packet, sequence_id=seq), self.version)  # may raise
        self._inflight[seq] = (token, asyncio.get_running_loop().time() + self.config.submit_timeout)
        self._writer.write(frame)

    async def session(self) -> None:
        """Connect, log in and serve until the link breaks (raises) or `close` is called."""
        c = self.config
        reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(c.host, c.port), c.connect_timeout)
        framer = Framer(self.version)
        try:
            await asyncio.wait_for(self._login(reader, framer), c.connect_timeout)
            self.ready = self.logged_in = True
            self.owner.link_changed()
            log.info("%s: logged in to %s:%d as %s", self.name, c.host, c.port, c.account)
            await self._serve(reader, framer)
        finally:
            was_ready, self.ready = self.ready, False
            self._writer.transport.abort()
            if not self._closing:
                self._fail_inflight(LINK_LOST)
            if was_ready:
                self.owner.link_changed()

    async def close(self, grace: float) -> None:
        """Stop: wait up to `grace` seconds for SUBMITs in flight, then TERMINATE. SUBMITs still
        unanswered are left to the outbox ('sending' rows go out again after a restart)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._inflight and self.ready and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self._closing = True
        if self.ready:
            self._write(Terminate(self._next_seq()))
            await asyncio.sleep(0)  # let the TERMINATE reach the socket
        if self._writer:
            self._writer.transport.abort()

    async def _read(self, reader, framer: Framer):
        while (packet := framer.next_packet()) is None:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("connection closed by the upstream")
            framer.feed(data)
        return packet

    async def _login(self, reader, framer: Framer) -> None:
        c = self.config
        ts = timestamp_now()
        auth = authenticator_source(c.account, c.secret, ts)
        self._write(Connect(self._next_seq(), c.account, auth, c.version, ts))
        resp = await self._read(reader, framer)
        if not isinstance(resp, ConnectResp):
            raise LoginRefused(f"expected CMPP_CONNECT_RESP, got {type(resp).__name__}")
        if resp.status != 0:
            raise LoginRefused(f"upstream refused the login of {c.account}: status {resp.status}")
        if resp.authenticator_ismg != authenticator_ismg(0, auth, c.secret, c.version):
            raise LoginRefused("upstream's AuthenticatorISMG does not match our secret")

    async def _serve(self, reader, framer: Framer) -> None:
        loop = asyncio.get_running_loop()
        c = self.config
        last_rx = loop.time()
        tick = min(1.0, c.submit_timeout / 4, c.idle_interval / 2)
        dead_after = c.idle_interval + c.retries * c.response_timeout
        pinged = 0.0
        next_check = last_rx + tick
        read = asyncio.ensure_future(self._read(reader, framer))
        try:
            while not self._closing:
                done, _ = await asyncio.wait({read}, timeout=tick)
                now = loop.time()
                if read in done:
                    packet = read.result()  # raises when the link broke
                    read = asyncio.ensure_future(self._read(reader, framer))
                    last_rx = now
                    self._handle(packet)
                    if self._closing:
                        return
                if now < next_check:
                    continue
                next_check = now + tick
                self._expire(now)
                idle = now - last_rx
                if idle > dead_after:
                    raise ConnectionError(f"no answer from the upstream for {idle:.0f} s")
                # idle: ACTIVE_TEST every T until something arrives (at most N before dead_after)
                if idle >= c.idle_interval and now - pinged >= min(c.response_timeout, c.idle_interval):
                    self._write(ActiveTest(self._next_seq()))
                    pinged = now
        finally:
            read.cancel()

    def _handle(self, packet) -> None:
        kind = type(packet)
        if kind is SubmitResp:
            entry = self._inflight.pop(packet.sequence_id, None)
            if entry is not None:  # None: answered after we timed it out
                self.owner.submit_answered(entry[0], packet)
                self.owner.link_changed()
        elif kind is Deliver:
            result = self.owner.deliver(self, packet)
            if result is not None:
                self._write(DeliverResp(packet.sequence_id, packet.msg_id, result))
        elif kind is ActiveTest:
            self._write(ActiveTestResp(packet.sequence_id))
        elif kind is Terminate:
            self._write(TerminateResp(packet.sequence_id))
            raise ConnectionError("upstream sent CMPP_TERMINATE")

    def _expire(self, now: float) -> None:
        expired = [seq for seq, (_, deadline) in self._inflight.items() if deadline <= now]
        for seq in expired:
            token, _ = self._inflight.pop(seq)
            self.owner.submit_failed(token, UPSTREAM_TIMEOUT)
        if expired:
            self.owner.link_changed()

    def _fail_inflight(self, stat: str) -> None:
        inflight, self._inflight = self._inflight, {}
        for token, _ in inflight.values():
            self.owner.submit_failed(token, stat)


def is_link_error(e: BaseException) -> bool:
    return isinstance(e, (OSError, LoginRefused, CmppDecodeError, asyncio.TimeoutError))
