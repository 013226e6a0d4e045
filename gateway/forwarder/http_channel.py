"""An HTTP channel (Channel.protocol http): one JSON POST per outbox row, synchronous outcome.

The request and answer are those the bundled simulator serves (gateway/simulator/
http_channel.py has the exact format): a signed JSON body with the whole text (the upstream
splits it), and an answer {"result": 0, "msg_id": ..., "stat": "DELIVRD"} carrying the final
state. Anything else (connection refused, timeout, non-2xx, bad JSON, result != 0) finishes the
row with MO:201. A success answer without a usable "stat" finishes it UNKNOWN: the upstream
took the message, but nobody will tell us more.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import urllib.error
import urllib.request

from gateway.cmpp import decode_content, timestamp_now
from gateway.store import GatewayStore, OutboxRow
from policy.rules.model import Channel
from policy.settings import Settings

from .channel import ChannelWorker, Stopping
from .codes import HTTP_FAILED, NO_REPORT
from .ledger import Ledger
from .split import UpstreamPart

log = logging.getLogger("gateway.forwarder.http")


class HttpSubmitFailed(Exception):
    pass


def request_body(channel: Channel, row: OutboxRow, timestamp: str) -> bytes:
    sign = hashlib.md5(f"{channel.account}{channel.secret}{timestamp}".encode("utf-8")).hexdigest()
    return json.dumps({
        "account": channel.account, "timestamp": timestamp, "sign": sign, "id": str(row.id),
        "src_id": row.src_id, "dest": row.dest,
        "content": decode_content(row.content, row.msg_fmt),
    }, ensure_ascii=False).encode("utf-8")


def post(url: str, body: bytes, timeout: float) -> str:
    """The final Stat the upstream answered; HttpSubmitFailed with the reason otherwise."""
    req = urllib.request.Request(url, body, {"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read(65536))
    except urllib.error.HTTPError as e:
        raise HttpSubmitFailed(f"HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise HttpSubmitFailed(str(getattr(e, "reason", e))) from None
    if not isinstance(answer, dict) or answer.get("result") != 0:
        raise HttpSubmitFailed(f"refused: {answer!r}")
    stat = answer.get("stat")
    ok = isinstance(stat, str) and 0 < len(stat) <= 7 and stat.isascii() and stat.isprintable()
    return stat if ok else NO_REPORT


class HttpChannel(ChannelWorker):
    def __init__(self, channel: Channel, settings: Settings, store: GatewayStore, ledger: Ledger):
        super().__init__(channel, store, ledger)
        self.timeout = settings.upstream_submit_timeout
        self.concurrency = max(1, channel.window)
        self._active: set[asyncio.Task] = set()

    def capacity(self) -> int:
        return self.concurrency - len(self._active)

    async def run(self) -> None:
        self.store.requeue_claimed(self.channel.id)
        try:
            await self.pump()
        finally:
            if self._active:
                await asyncio.wait(self._active, timeout=self.timeout)

    async def forward(self, row: OutboxRow, parts: list[UpstreamPart]) -> None:
        try:
            await self.rate.acquire()
        except Stopping:
            self.store.requeue(row.id)
            raise
        task = asyncio.create_task(self._post(row))
        self._active.add(task)
        task.add_done_callback(self._done)
        self.forwarded += 1

    def _done(self, task: asyncio.Task) -> None:
        self._active.discard(task)
        self.link_changed()

    async def _post(self, row: OutboxRow) -> None:
        url = self.channel.http_url or ""
        body = request_body(self.channel, row, f"{timestamp_now():010d}")
        started = time.monotonic()
        try:
            stat = await asyncio.to_thread(post, url, body, self.timeout)
        except HttpSubmitFailed as e:
            log.warning("%s: POST of outbox %d to %s failed after %.1f s: %s", self.channel.id,
                        row.id, url, time.monotonic() - started, e)
            stat = HTTP_FAILED
        self.finish(row.id, stat)
