"""The forwarder's own tables in the gateway store's SQLite file, and the SQL it needs beyond
GatewayStore's API.

fwd_parts    upstream Msg_Id -> (outbox row, part number) for every part the upstream took,
             with the part's final Stat once its report came. A row is finished when every
             part has a Stat. Kept `report_map_hours`.
fwd_orphans  upstream reports whose Msg_Id is not (yet) in fwd_parts: a report can overtake
             the SUBMIT_RESP bookkeeping (it may arrive on another connection of the channel),
             or belong to a copy of a message the forwarder sent twice after a crash.
fwd_mo_seen  upstream DELIVER Msg_Ids of MO messages already stored, so that an MO the
             upstream resends (our DELIVER_RESP was lost in a crash) reaches the customer once.

Why not GatewayStore.mark_sent: the outbox row must turn 'sent' in the same transaction as its
part map is written, and only if it is still 'sending' (a stale SUBMIT_RESP must not revive a
finished row). GatewayStore.add_mo likewise cannot record the de-duplication key in its
transaction. Both are a few lines of SQL against the store's schema, here.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Sequence

from ..sqlitedb import open_shared, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fwd_parts (
    channel_id TEXT NOT NULL,
    upstream_msg_id TEXT NOT NULL,
    outbox_id INTEGER NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    stat TEXT,
    done_time REAL,
    created REAL NOT NULL,
    PRIMARY KEY (channel_id, upstream_msg_id)
);
CREATE INDEX IF NOT EXISTS fwd_parts_outbox ON fwd_parts (outbox_id);
CREATE INDEX IF NOT EXISTS fwd_parts_created ON fwd_parts (created);
CREATE TABLE IF NOT EXISTS fwd_orphans (
    channel_id TEXT NOT NULL,
    upstream_msg_id TEXT NOT NULL,
    stat TEXT NOT NULL,
    done_time REAL NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (channel_id, upstream_msg_id)
);
CREATE TABLE IF NOT EXISTS fwd_mo_seen (
    channel_id TEXT NOT NULL,
    upstream_msg_id TEXT NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (channel_id, upstream_msg_id)
);
"""

DELIVERED = "DELIVRD"


@dataclass(frozen=True)
class Final:
    """Every part of an outbox row has its report: the row's final state."""
    outbox_id: int
    stat: str
    done_time: float


def combine(stats: Sequence[tuple[int, str, float]]) -> tuple[str, float]:
    """The customer's Stat for a message the upstream got in parts: DELIVRD only if every part
    was delivered, else the first failed part's Stat. (part, stat, done_time) in any order."""
    ordered = sorted(stats)
    failed = [s for s in ordered if s[1] != DELIVERED]
    stat = failed[0][1] if failed else DELIVERED
    return stat, max(s[2] for s in ordered)


class Ledger:
    def __init__(self, path: str, busy_timeout: float = 5.0):
        self._db = open_shared(path, _SCHEMA, busy_timeout)

    def close(self) -> None:
        self._db.close()

    def _tx(self):
        return transaction(self._db)

    def has_pending(self, channel_id: str) -> bool:
        """Cheap read before GatewayStore.claim_outbox, which takes the write lock."""
        return self._db.execute("SELECT 1 FROM outbox WHERE channel_id = ? AND state = 'pending'"
                                " AND not_before <= ? LIMIT 1",
                                (channel_id, time.time())).fetchone() is not None

    def mark_sent(self, channel_id: str, outbox_id: int, upstream_ids: Sequence[int]) -> Final | None:
        """The upstream took every part: row 'sent', part map written, reports that overtook us
        applied. Returns the row's Final when those reports already complete it. Does nothing
        (None) unless the row is still 'sending'."""
        now = time.time()
        keys = [str(i) for i in upstream_ids]
        with self._tx() as db:
            cur = db.execute("UPDATE outbox SET state = 'sent', upstream_msg_id = ?, updated = ?"
                             " WHERE id = ? AND state = 'sending'", (keys[0], now, outbox_id))
            if cur.rowcount == 0:
                return None
            db.execute("DELETE FROM fwd_parts WHERE outbox_id = ?", (outbox_id,))
            db.executemany(
                "INSERT OR REPLACE INTO fwd_parts (channel_id, upstream_msg_id, outbox_id, part,"
                " parts, created) VALUES (?,?,?,?,?,?)",
                [(channel_id, key, outbox_id, n, len(keys), now) for n, key in enumerate(keys, 1)])
            marks = ",".join("?" * len(keys))
            orphans = db.execute(f"SELECT upstream_msg_id, stat, done_time FROM fwd_orphans"
                                 f" WHERE channel_id = ? AND upstream_msg_id IN ({marks})",
                                 (channel_id, *keys)).fetchall()
            for key, stat, done_time in orphans:
                db.execute("UPDATE fwd_parts SET stat = ?, done_time = ? WHERE channel_id = ?"
                           " AND upstream_msg_id = ?", (stat, done_time, channel_id, key))
                db.execute("DELETE FROM fwd_orphans WHERE channel_id = ? AND upstream_msg_id = ?",
                           (channel_id, key))
            return self._final(db, outbox_id) if orphans else None

    def record_report(self, channel_id: str, upstream_id: int, stat: str,
                      done_time: float) -> Final | None:
        """An upstream status report. Returns the row's Final once all its parts reported;
        unknown ids are kept as orphans (see the module doc)."""
        key = str(upstream_id)
        with self._tx() as db:
            hit = db.execute("SELECT outbox_id FROM fwd_parts WHERE channel_id = ?"
                             " AND upstream_msg_id = ?", (channel_id, key)).fetchone()
            if hit is None:
                db.execute("INSERT OR REPLACE INTO fwd_orphans (channel_id, upstream_msg_id, stat,"
                           " done_time, received) VALUES (?,?,?,?,?)",
                           (channel_id, key, stat, done_time, time.time()))
                return None
            db.execute("UPDATE fwd_parts SET stat = ?, done_time = ? WHERE channel_id = ?"
                       " AND upstream_msg_id = ? AND stat IS NULL", (stat, done_time, channel_id, key))
            return self._final(db, hit[0])

    @staticmethod
    def _final(db: sqlite3.Connection, outbox_id: int) -> Final | None:
        rows = db.execute("SELECT part, parts, stat, done_time FROM fwd_parts WHERE outbox_id = ?",
                          (outbox_id,)).fetchall()
        if not rows or len(rows) != rows[0][1] or any(r[2] is None for r in rows):
            return None
        stat, done_time = combine([(part, stat, done) for part, _, stat, done in rows])
        return Final(outbox_id, stat, done_time)

    def complete_unfinished(self) -> list[Final]:
        """Rows still 'sent' whose parts all reported: a crash hit between recording the last
        report and GatewayStore.finish. Run at start."""
        ids = [r[0] for r in self._db.execute(
            "SELECT p.outbox_id FROM fwd_parts p JOIN outbox o ON o.id = p.outbox_id"
            " WHERE o.state = 'sent' GROUP BY p.outbox_id"
            " HAVING count(p.stat) = count(*) AND count(*) = max(p.parts)")]
        return [f for f in (self._final(self._db, i) for i in ids) if f]

    def expire(self, max_age: float, now: float | None = None) -> list[int]:
        """Forget mappings and orphans older than `max_age` seconds. Returns the outbox ids of
        rows still 'sent' whose map expired: no report will ever be matched to them."""
        now = time.time() if now is None else now
        cutoff = now - max_age
        with self._tx() as db:
            stale = [r[0] for r in db.execute(
                "SELECT DISTINCT p.outbox_id FROM fwd_parts p JOIN outbox o ON o.id = p.outbox_id"
                " WHERE p.created < ? AND o.state = 'sent'", (cutoff,))]
            db.execute("DELETE FROM fwd_parts WHERE created < ?", (cutoff,))
            db.execute("DELETE FROM fwd_orphans WHERE received < ?", (cutoff,))
            db.execute("DELETE FROM fwd_mo_seen WHERE received < ?", (cutoff,))
        return stale

    def add_mo(self, channel_id: str, upstream_id: int, account_id: str, dest_id: str,
               src_terminal_id: str, content: bytes, msg_fmt: int, service_id: str,
               tp_udhi: int) -> bool:
        """Store an MO for `account_id` unless this upstream DELIVER was stored before.
        True if stored now."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO fwd_mo_seen (channel_id, upstream_msg_id,"
                             " received) VALUES (?,?,?)", (channel_id, str(upstream_id), now))
            if cur.rowcount == 0:
                return False
            db.execute("INSERT INTO mo (account_id, dest_id, src_terminal_id, service_id, content,"
                       " msg_fmt, tp_udhi, received, state) VALUES (?,?,?,?,?,?,?,?, 'pending')",
                       (account_id, dest_id, src_terminal_id, service_id, content, msg_fmt,
                        tp_udhi, now))
        return True
