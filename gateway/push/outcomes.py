"""Push outcomes, per report, in the gateway store's file (table push_outcomes).

One row per report pushed at least once: the latest attempt's outcome (0 received,
252 answered without the OK body, 253 push address wrong, 254 no answer in time), how many
attempts were made, and whether that is final (0, or the retries are used up).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from ..sqlitedb import open_shared, transaction

RECEIVED, BAD_ANSWER, BAD_ADDRESS, TIMED_OUT = 0, 252, 253, 254

_SCHEMA = """
CREATE TABLE IF NOT EXISTS push_outcomes (
    report_id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    outcome INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    final INTEGER NOT NULL,
    detail TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS push_outcomes_msg ON push_outcomes (account_id, msg_id);
"""


@dataclass(frozen=True)
class PushOutcome:
    report_id: int
    account_id: str
    msg_id: int
    outcome: int
    attempts: int
    final: bool
    detail: str
    updated: float


class PushLog:
    def __init__(self, path: str, busy_timeout: float = 5.0):
        self._db = open_shared(path, _SCHEMA, busy_timeout)

    def close(self) -> None:
        self._db.close()

    def record(self, account_id: str, reports: Sequence[tuple[int, int, int]], outcome: int,
               final: bool, detail: str) -> None:
        """(report id, customer Msg_Id, attempts so far) of one pushed batch."""
        now = time.time()
        with transaction(self._db) as db:
            db.executemany(
                "INSERT OR REPLACE INTO push_outcomes (report_id, account_id, msg_id, outcome,"
                " attempts, final, detail, updated) VALUES (?,?,?,?,?,?,?,?)",
                [(rid, account_id, str(msg_id), outcome, attempts, int(final or outcome == RECEIVED),
                  detail, now) for rid, msg_id, attempts in reports])

    def for_message(self, account_id: str, msg_id: int) -> list[PushOutcome]:
        return self._query("WHERE account_id = ? AND msg_id = ? ORDER BY report_id",
                           (account_id, str(msg_id)))

    def for_report(self, report_id: int) -> PushOutcome | None:
        found = self._query("WHERE report_id = ?", (report_id,))
        return found[0] if found else None

    def for_account(self, account_id: str, limit: int = 100) -> list[PushOutcome]:
        return self._query("WHERE account_id = ? ORDER BY report_id DESC LIMIT ?",
                           (account_id, limit))

    def _query(self, where: str, args: tuple) -> list[PushOutcome]:
        rows = self._db.execute(f"SELECT report_id, account_id, msg_id, outcome, attempts, final,"
                                f" detail, updated FROM push_outcomes {where}", args)
        return [PushOutcome(r[0], r[1], int(r[2]), r[3], r[4], bool(r[5]), r[6], r[7])
                for r in rows]
