"""What every channel worker does with the outbox, whatever protocol the upstream speaks:
claim pending rows as capacity allows, forward them, and finish rows with a final Stat."""
from __future__ import annotations

import asyncio
import logging

from gateway.store import GatewayStore, OutboxRow
from policy.rules.model import Channel

from .codes import LONG_NOT_SUPPORTED
from .ledger import Ledger
from .rate import RateLimiter
from .split import NotSplittable, UpstreamPart, upstream_parts

log = logging.getLogger("gateway.forwarder")

POLL_INTERVAL = 0.05  # seconds between looks at an idle channel's outbox


class Stopping(Exception):
    pass


class ChannelWorker:
    def __init__(self, channel: Channel, store: GatewayStore, ledger: Ledger):
        self.channel = channel
        self.store = store
        self.ledger = ledger
        self.rate = RateLimiter(channel.rate)
        self.stopping = False
        self._changed = asyncio.Event()
        self.forwarded = 0  # SUBMITs (or POSTs) sent, for the log line at stop

    # -- for subclasses --------------------------------------------------------------------------
    def capacity(self) -> int:
        raise NotImplementedError

    async def forward(self, row: OutboxRow, parts: list[UpstreamPart]) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
    def link_changed(self) -> None:
        self._changed.set()

    def stop(self) -> None:
        self.stopping = True
        self._changed.set()

    async def wait_change(self, timeout: float) -> None:
        if self.stopping:
            raise Stopping
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        if self.stopping:
            raise Stopping

    async def pump(self) -> None:
        """Claim only what can go out now, so that a crash leaves few rows in 'sending'."""
        cid = self.channel.id
        try:
            while not self.stopping:
                capacity = self.capacity()
                if capacity <= 0 or not self.ledger.has_pending(cid):
                    await self.wait_change(POLL_INTERVAL)
                    continue
                for row in self.store.claim_outbox(cid, capacity):
                    await self._forward_row(row)
        except Stopping:
            pass

    async def _forward_row(self, row: OutboxRow) -> None:
        try:
            parts = upstream_parts(row.content, row.msg_fmt, row.udh, ref=row.id)
        except NotSplittable as e:
            log.info("%s: outbox %d cannot be split for the upstream: %s", self.channel.id, row.id, e)
            self.finish(row.id, LONG_NOT_SUPPORTED)
            return
        if len(parts) > 1 and not self.channel.supports_long:
            self.finish(row.id, LONG_NOT_SUPPORTED)
            return
        await self.forward(row, parts)

    def finish(self, outbox_id: int, stat: str, done_time: float | None = None) -> None:
        if self.store.finish(outbox_id, stat, done_time):
            log.debug("%s: outbox %d finished %s", self.channel.id, outbox_id, stat)
