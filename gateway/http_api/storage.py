"""The gateway store, used from one dedicated thread so that SQLite never holds up the event
loop (a commit waits for the other processes' write lock for up to the busy timeout).

Accepted messages are group-committed: every request's messages that arrive while a commit is
under way go into the next one, so under load one transaction serves many requests, and each
request is still all-or-nothing (a failed batch is retried request by request).
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from gateway.push import PushLog
from gateway.store import GatewayStore, Message, Recipient

from .pulls import PulledReport, ReportPulls

log = logging.getLogger("gateway.http_api.store")

Item = tuple[Message, Sequence[Recipient]]


class StoreThread:
    def __init__(self, path: str):
        self.path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="http-api-store")
        self._store: GatewayStore | None = None
        self._pulls: ReportPulls | None = None
        self._waiting: list[tuple[list[Item], asyncio.Future]] = []
        self._committer: asyncio.Task | None = None

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self._store = GatewayStore(self.path)
        PushLog(self.path).close()  # creates push_outcomes if the forwarder has not yet
        self._pulls = ReportPulls(self.path)

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        await self._call(self._close)
        self._pool.shutdown()

    def _close(self) -> None:
        for part in (self._pulls, self._store):
            if part is not None:
                part.close()

    async def accept(self, items: list[Item]) -> None:
        """Store one request's evaluated messages in one transaction; raises sqlite3.Error if
        they could not be stored (then none is)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((items, future))
        if self._committer is None:
            self._committer = loop.create_task(self._commit())
        await future

    async def _commit(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._call(self._store.accept_messages,
                                     [(m, r, None) for items, _ in batch for m, r in items])
                    outcomes = [None] * len(batch)
                except sqlite3.Error as error:
                    outcomes = [error] if len(batch) == 1 else \
                        [await self._call(self._accept_alone, items) for items, _ in batch]
                for (_, future), error in zip(batch, outcomes):
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._committer = None

    def _accept_alone(self, items: list[Item]) -> sqlite3.Error | None:
        try:
            self._store.accept_messages([(m, r, None) for m, r in items])
        except sqlite3.Error as error:
            log.error("cannot store %d messages of one request: %s", len(items), error)
            return error
        return None

    async def claim_reports(self, account_id: str, cursor: int, limit: int,
                            lease: float) -> list[PulledReport]:
        return await self._call(self._pulls.claim, account_id, cursor, limit, time.time(), lease)

    async def ack_reports(self, account_id: str, ids: list[int]) -> list[int]:
        return await self._call(self._pulls.ack, account_id, ids)
