"""Status reports pulled over the API (GET /v1/reports, POST /v1/reports/ack), on the reports
table of the gateway store.

Reports of HTTP accounts (and of any account with a push URL) belong to the forwarder's pusher
(gateway/push) first. A pull hands out only those the pusher is finished with without success:
their push outcome is final and not 0 (push_outcomes, written by the pusher), so nothing pushed
OK is ever pulled, and nothing is pulled while a push of it may still succeed.

Hand-out is at most once per lease: a claim marks the reports 'sent' with attempts + 1 and
next_attempt = now + lease in one statement (so two pulls, in one process or several, never get
the same report); a report not acknowledged within its lease is handed out again. Acknowledged
reports are 'acked', like a CMPP DELIVER_RESP or a push answered OK.

A report the pusher has just given up on has as many attempts as its push outcome records;
one handed out by a pull has more, and only then does its lease (next_attempt) apply: the
pusher's own next_attempt is not a reason to keep a customer waiting.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

_CLAIM = """
UPDATE reports SET state = 'sent', attempts = attempts + 1, next_attempt = :lease_end,
       deliver_msg_id = CAST(id AS TEXT)
WHERE id IN (
    SELECT r.id FROM reports r JOIN push_outcomes p ON p.report_id = r.id
    WHERE r.account_id = :account AND r.state = 'sent' AND r.id > :cursor
      AND p.final = 1 AND p.outcome != 0
      AND (r.attempts = p.attempts OR r.next_attempt <= :now)
    ORDER BY r.id LIMIT :limit)
RETURNING id, msg_id, dest, stat, src_id, service_id, submit_time, done_time
"""


@dataclass(frozen=True, slots=True)
class PulledReport:
    id: int
    msg_id: int
    dest: str
    stat: str
    src_id: str
    service_id: str
    submit_time: float
    done_time: float


class ReportPulls:
    """On the store file (its reports and push_outcomes tables must exist); one thread."""

    def __init__(self, path: str, busy_timeout: float = 5.0):
        self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        self._db.close()

    def claim(self, account_id: str, cursor: int, limit: int, now: float,
              lease: float) -> list[PulledReport]:
        """Up to `limit` reports due for the account with id > cursor, in id order, each now
        leased until now + lease."""
        rows = self._db.execute(_CLAIM, {"account": account_id, "cursor": cursor, "limit": limit,
                                         "now": now, "lease_end": now + lease}).fetchall()
        return sorted((PulledReport(r[0], int(r[1]), *r[2:]) for r in rows), key=lambda r: r.id)

    def ack(self, account_id: str, ids: Sequence[int]) -> list[int]:
        """Acknowledge reports of the account that were handed out (by a pull or a push);
        returns the ids that were, in the order given."""
        marks = ",".join("?" * len(ids))
        done = {r[0] for r in self._db.execute(
            f"UPDATE reports SET state = 'acked' WHERE account_id = ? AND state = 'sent'"
            f" AND id IN ({marks}) RETURNING id", (account_id, *ids))}
        return [i for i in ids if i in done]
