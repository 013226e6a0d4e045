"""Delivery of status reports and MO messages to customers (CMPP_DELIVER), from the store.

One pump per front-end process. It looks at accounts with a live connection only: right away
when woken (a submit produced reports, a customer logged in, a DELIVER_RESP made room), within
WRITES_CHECK seconds of another process (the forwarder) committing to the store, and every
`poll` seconds otherwise (resends). Each DELIVER goes to any logged-in connection of the
account with room in its window; it stays in the store until the DELIVER_RESP arrives, is
resent with the same Msg_Id after `report_resend` up to `retries` sends, and then waits for the
account's next login (store.rearm). One that cannot be encoded for the connection (a field the
wire cannot carry) is logged as an error and stored as 'failed': never counted as sent, never
resent in a loop. A customer that is offline simply has its reports waiting
in the store, across restarts.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from itertools import cycle

log = logging.getLogger("smspolicy.frontend.reports")

WRITES_CHECK = 0.05   # seconds between looks at whether another process wrote the store


class ReportPump:
    def __init__(self, fe, poll: float):
        self.fe = fe
        self.poll = poll
        self._due: set[str] = set()
        self._more: set[str] = set()   # accounts whose last round filled their windows
        self._event = asyncio.Event()

    def wake(self, account_id: str) -> None:
        self._due.add(account_id)
        self._event.set()

    def room_freed(self, account_id: str) -> None:
        """A DELIVER_RESP freed a place in a window. When the account's last round found more
        than its windows could take, deliver again now: waiting for the next poll held an
        account to `window` reports per connection per poll (64/s for 4 connections)."""
        if account_id in self._more:
            self.wake(account_id)

    async def run(self) -> None:
        next_sweep = 0.0
        seen = self._written()
        while True:
            try:
                await asyncio.wait_for(self._event.wait(), min(self.poll, WRITES_CHECK))
            except asyncio.TimeoutError:
                pass
            self._event.clear()
            now = time.time()
            # another process (the forwarder) committed: its new reports go out now, not at
            # the next poll (up to `poll` seconds of every report's latency)
            version = self._written()
            if now >= next_sweep or version != seen:
                seen = version
                accounts, next_sweep = set(self.fe.accounts), now + self.poll
            else:
                accounts = self._due & self.fe.accounts.keys()
            self._due.clear()
            for account in accounts:
                try:
                    self.deliver(account, now)
                except Exception:  # noqa: BLE001 - reports stay stored; the next round retries
                    log.exception("cannot deliver reports of %s; retrying later", account)

    def _written(self) -> int | None:
        try:
            return self.fe.store.data_version()
        except sqlite3.Error:   # cannot tell: the round after a failure looks; the poll still sweeps
            return None

    def deliver(self, account_id: str, now: float) -> int:
        """Write what is due for the account to its connections; returns the number sent."""
        s = self.fe.settings
        live = [x for x in self.fe.accounts.get(account_id, ()) if x.delivery_capacity() > 0]
        room = sum(x.delivery_capacity() for x in live)
        if not room:
            self._more.add(account_id)   # could not look: look again when a window frees up
            return 0
        sent, full = 0, False
        store, msgids = self.fe.store, self.fe.msgids
        kinds = [(store.pending_mo, "send_mo", store.mark_mo_sent, store.fail_mo)]
        if not any(x.reports_pushed for x in live):  # else the forwarder's pusher delivers them
            kinds.insert(0, (store.pending_reports, "send_report", store.mark_reports_sent,
                             store.fail_reports))
        for fetch, send, mark, fail in kinds:
            limit = room - sent
            rows = fetch(account_id, now, limit, s.retries)
            full = full or len(rows) >= limit
            if not rows:
                continue
            marks, failed = [], []
            targets = cycle(live)
            for row in rows:
                session = next(targets)
                while session.delivery_capacity() <= 0:
                    session = next(targets)
                deliver_msg_id = row.deliver_msg_id or msgids.next()
                if getattr(session, send)(row, deliver_msg_id):
                    marks.append((row.id, deliver_msg_id))
                else:   # cannot be encoded (the session logged why): failed, never "sent"
                    failed.append(row.id)
            if marks:
                mark(marks, now + s.report_resend)
            if failed:
                fail(failed)
                log.error("%s: %d %s cannot be encoded and will not be delivered (state "
                          "'failed' in the store)", account_id, len(failed),
                          "MO messages" if send == "send_mo" else "status reports")
            sent += len(marks)
            if sent >= room:
                full = True   # the kinds not fetched may have more
                break
        if full:
            self._more.add(account_id)
        else:
            self._more.discard(account_id)
        return sent
