"""The forwarder process: one worker per channel of the rules over the gateway store, and the
HTTP report push (gateway/push) for accounts configured with a push URL.

Delivery guarantee (kill -9 anywhere): the front-end stores a message before it answers the
customer; a worker claims rows ('sending', committed) before it sends them, and records the
upstream's answer ('sent' + the Msg_Id map, one transaction) after. A forwarder killed between
sending and recording leaves the row 'sending'; the next start sends it again (at least once).
The upstream may then hold two copies: the first copy's report carries a Msg_Id we never
recorded, stays an orphan and is dropped after report_map_hours; the second one's report finishes
the row. GatewayStore.finish turns a row 'done' and creates the customer's report in one
transaction and refuses rows already done, so however often reports arrive, the customer gets
exactly one per recipient (per part of a long message). Upstream DELIVERs are answered only
after they are committed; the upstream resends unanswered ones and duplicates are harmless
(finish refuses a done row; MO messages are de-duplicated by their DELIVER Msg_Id).
"""
from __future__ import annotations

import asyncio
import logging
import os

from gateway.push import Pusher, PushLog
from gateway.store import GatewayStore
from policy.rules.model import PolicySet
from policy.settings import Settings

from .channel import ChannelWorker
from .cmpp_channel import CmppChannel
from .codes import NO_REPORT
from .http_channel import HttpChannel
from .ledger import Ledger

log = logging.getLogger("gateway.forwarder")

STORE_FILE = "gateway.db"  # the front-end's store (gateway/frontend/server.py STORE_FILE)
_EXPIRY_EVERY = 60.0  # seconds between sweeps for rows whose report never came


def mo_router(policy: PolicySet):
    """dest_id -> the account whose access code is its longest prefix, or None."""
    codes = sorted(((a.access_code, a.id) for a in policy.accounts.values() if a.access_code),
                   key=lambda c: -len(c[0]))

    def owner(dest_id: str) -> str | None:
        return next((account for code, account in codes if dest_id.startswith(code)), None)
    return owner


class Forwarder:
    def __init__(self, settings: Settings, policy: PolicySet):
        self.settings = settings
        os.makedirs(settings.data_dir, exist_ok=True)
        path = settings.path(STORE_FILE)
        self.store = GatewayStore(path)
        self.ledger = Ledger(path)
        owner = mo_router(policy)
        self.workers: list[ChannelWorker] = []
        for channel in policy.channels.values():
            if channel.protocol == "http":
                self.workers.append(HttpChannel(channel, settings, self.store, self.ledger))
            else:
                self.workers.append(CmppChannel(channel, settings, self.store, self.ledger, owner))
        self.push_log = PushLog(path)
        self.pusher = Pusher(settings, policy, self.store, self.push_log)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()
        self.pusher.stop()
        for worker in self.workers:
            worker.stop()

    async def run(self) -> None:
        """Until stop(); raises what a worker died of (the process should exit and be
        restarted rather than leave a channel unserved)."""
        for final in self.ledger.complete_unfinished():
            self.store.finish(final.outbox_id, final.stat, final.done_time)
        tasks = [asyncio.create_task(w.run(), name=w.channel.id) for w in self.workers]
        tasks.append(asyncio.create_task(self._expire_maps(), name="report-map expiry"))
        tasks.append(asyncio.create_task(self.pusher.run(), name="report push"))
        stopped = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception():
                    raise RuntimeError(f"forwarder task {task.get_name()} failed") \
                        from task.exception()
        finally:
            self.stop()
            await asyncio.gather(stopped, *tasks, return_exceptions=True)
            self.ledger.close()
            self.push_log.close()
            self.store.close()

    async def _expire_maps(self) -> None:
        max_age = self.settings.report_map_hours * 3600.0
        while not self._stop.is_set():
            for outbox_id in self.ledger.expire(max_age):
                self.store.finish(outbox_id, NO_REPORT)
            try:
                await asyncio.wait_for(self._stop.wait(), _EXPIRY_EVERY)
            except asyncio.TimeoutError:
                pass
