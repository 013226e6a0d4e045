"""HTTP report push: reports of push accounts, POSTed in batches, with bounded retries.

Which accounts: those with a push_url, and HTTP-access accounts without one (their reports
can only be pushed, so they get outcome 253 rather than waiting forever).

State lives in the store's reports table (GatewayStore API): a batch is marked sent
(attempts + 1, next_attempt = now + push_timeout + backoff) before the POST, acknowledged on
outcome 0. A crash mid-push therefore leaves the batch due again after next_attempt (pushed at
least once; `id` in the body lets the customer drop a repeat). After 1 + push_retries attempts a
report stays unacknowledged with its last outcome as final. Outcomes: outcomes.PushLog.
"""
from __future__ import annotations

import asyncio
import logging
import time

from gateway.store import GatewayStore, ReportRow
from policy.rules.model import Account, PolicySet
from policy.settings import Settings

from .client import batch_body, push
from .outcomes import RECEIVED, PushLog

log = logging.getLogger("gateway.push")

BATCH = 100  # reports per POST
POLL_INTERVAL = 0.2
_FIRST_BACKOFF, _MAX_BACKOFF = 1.0, 300.0


def push_accounts(policy: PolicySet) -> list[Account]:
    return [a for a in policy.accounts.values() if a.push_url or a.access_mode == "http"]


def backoff(attempt: int) -> float:
    """Wait after the `attempt`-th failed push (1-based): 1, 2, 4 ... seconds, capped."""
    return min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (attempt - 1))


class Pusher:
    def __init__(self, settings: Settings, policy: PolicySet, store: GatewayStore, log_: PushLog):
        self.settings = settings
        self.accounts = push_accounts(policy)
        self.store = store
        self.outcomes = log_
        self.max_attempts = 1 + settings.push_retries
        self._busy: dict[str, asyncio.Task] = {}
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                now = time.time()
                for account in self.accounts:
                    if account.id in self._busy:
                        continue
                    rows = self.store.pending_reports(account.id, now, BATCH, self.max_attempts)
                    if rows:
                        task = asyncio.create_task(self._push(account, rows))
                        self._busy[account.id] = task
                        task.add_done_callback(lambda _, a=account.id: self._busy.pop(a, None))
                try:
                    await asyncio.wait_for(self._stop.wait(), POLL_INTERVAL)
                except asyncio.TimeoutError:
                    pass
        finally:
            if self._busy:  # let POSTs under way record their outcome
                await asyncio.wait(list(self._busy.values()), timeout=self.settings.push_timeout)

    async def _push(self, account: Account, rows: list[ReportRow]) -> None:
        s = self.settings
        attempt = max(r.attempts for r in rows) + 1
        # deliver_msg_id is the CMPP DELIVER's id for CMPP delivery; a push has none, and the
        # report's own id is what ack_report needs to find it again
        self.store.mark_reports_sent([(r.id, r.id) for r in rows],
                                     time.time() + s.push_timeout + backoff(attempt))
        outcome, detail = await asyncio.to_thread(
            push, account.push_url, batch_body(account.id, rows), account.push_ok_body,
            s.push_timeout)
        final = outcome == RECEIVED or attempt >= self.max_attempts
        self.outcomes.record(account.id, [(r.id, r.msg_id, r.attempts + 1) for r in rows],
                             outcome, final, detail)
        if outcome == RECEIVED:
            for r in rows:
                self.store.ack_report(account.id, r.id)
        else:
            log.warning("push of %d reports to %s (%s): outcome %d, %s%s", len(rows), account.id,
                        account.push_url, outcome, detail, "" if final else "; will retry")
