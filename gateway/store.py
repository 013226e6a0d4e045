"""The gateway's durable store: one SQLite file shared by the CMPP front-end and the forwarder.

Two processes use it at once (WAL mode, short write transactions, a busy timeout), each from a
single thread. Every state change that the "no message is lost" promise depends on happens in
one transaction:

* the front-end's `accept_message` writes, for one evaluated message, the accepted and held
  recipients to `outbox` and the rejected ones as pending status reports (and drops the long-SMS
  parts it was reassembled from) before the customer gets SUBMIT_RESP Result 0;
* the forwarder's `finish` marks an outbox row done and creates its status report(s).

Tables
------
outbox   one row per (message, recipient) to forward. state: pending -> sending (claimed by a
         forwarder) -> sent (upstream took it, `upstream_msg_id` set) -> done (final report
         created); held (manual audit) -> pending (approved) or done (rejected, MA:0006).
         `msg_id` is the customer's Msg_Id for this recipient; `msg_ids` holds one Msg_Id per
         part the customer sent (a long SMS is reassembled into one row, and reported per
         part). `content` is the whole text in `msg_fmt` encoding without UDH; `udh` is a
         non-concatenation UDH the customer sent (port addressing, ...) to put back in front.
         `not_before`: a scheduled message's At_Time (epoch seconds; 0 = at once): no
         forwarder claims the row before then (a store of an older version gets the column
         added when opened).
reports  one row per status report owed to a customer (CMPP_DELIVER, Registered_Delivery 1).
         state: pending -> sent (DELIVER written, `deliver_msg_id` is that DELIVER's Msg_Id,
         resent while attempts < N once `next_attempt` passed) -> acked (DELIVER_RESP came).
         Reports nobody asked for (Registered_Delivery 0) are stored straight as acked. A
         report that cannot be encoded as a DELIVER is 'failed' (logged as an error, not sent).
mo       mobile-originated messages owed to a customer, same states as reports.
parts    long-SMS parts buffered until their message is complete (front-end only), so that a
         part answered with Result 0 survives a restart of the front-end.

Msg_Ids are unsigned 64-bit and kept as decimal TEXT (SQLite integers are signed); the API
takes and returns int. Times are Unix epoch seconds (float).
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from .sqlitedb import Checkpointer, open_shared, transaction

HELD_REJECT_STAT = "MA:0006"   # 系统拒绝: manual audit refused a held message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    msg_ids TEXT NOT NULL,
    dest TEXT NOT NULL,
    src_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    content BLOB NOT NULL,
    udh BLOB NOT NULL,
    msg_fmt INTEGER NOT NULL,
    channel_id TEXT NOT NULL,
    segments INTEGER NOT NULL,
    registered_delivery INTEGER NOT NULL,
    submit_time REAL NOT NULL,
    state TEXT NOT NULL,
    upstream_msg_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    not_before REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_claim ON outbox (channel_id, state, id);
CREATE INDEX IF NOT EXISTS outbox_upstream ON outbox (channel_id, upstream_msg_id);
CREATE INDEX IF NOT EXISTS outbox_msg ON outbox (account_id, msg_id);
CREATE INDEX IF NOT EXISTS outbox_held ON outbox (state) WHERE state = 'held';

CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    dest TEXT NOT NULL,
    stat TEXT NOT NULL,
    submit_time REAL NOT NULL,
    done_time REAL NOT NULL,
    registered_delivery INTEGER NOT NULL,
    src_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    deliver_msg_id TEXT
);
CREATE INDEX IF NOT EXISTS reports_due ON reports (account_id, state, next_attempt);
CREATE INDEX IF NOT EXISTS reports_deliver ON reports (deliver_msg_id);

CREATE TABLE IF NOT EXISTS mo (
    id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    dest_id TEXT NOT NULL,
    src_terminal_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    content BLOB NOT NULL,
    msg_fmt INTEGER NOT NULL,
    tp_udhi INTEGER NOT NULL,
    received REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    deliver_msg_id TEXT
);
CREATE INDEX IF NOT EXISTS mo_due ON mo (account_id, state, next_attempt);
CREATE INDEX IF NOT EXISTS mo_deliver ON mo (deliver_msg_id);

CREATE TABLE IF NOT EXISTS parts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    account_id TEXT NOT NULL,
    src_id TEXT NOT NULL,
    dests TEXT NOT NULL,
    ref INTEGER NOT NULL,
    total INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    msg_ids TEXT NOT NULL,
    payload BLOB NOT NULL,
    msg_fmt INTEGER NOT NULL,
    registered_delivery INTEGER NOT NULL,
    service_id TEXT NOT NULL,
    fee_type TEXT NOT NULL,
    fee_code TEXT NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS parts_key ON parts (key);
"""


# ---- what goes in ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Message:
    """What every recipient of one evaluated customer message shares."""
    request_id: str
    decision_id: str
    account_id: str
    src_id: str
    service_id: str
    msg_fmt: int
    content: bytes               # whole text, reassembled, without UDH
    registered_delivery: bool
    submit_time: float
    udh: bytes = b""             # a non-concatenation UDH to forward in front of the content
    not_before: float = 0.0      # At_Time (epoch seconds): not forwarded before; 0 = at once


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient's outcome. `msg_ids`: the customer's Msg_Id for it, one per part."""
    dest: str
    msg_ids: tuple[int, ...]
    action: str                  # accept | hold | reject
    channel_id: str = ""
    segments: int = 1
    stat: str = ""               # the 7-character code when rejected


@dataclass(frozen=True, slots=True)
class NewReport:
    """A status report the front-end itself produces (reassembly failures)."""
    account_id: str
    msg_id: int
    dest: str
    stat: str
    submit_time: float
    done_time: float
    registered_delivery: bool
    src_id: str
    service_id: str


@dataclass(frozen=True, slots=True)
class Part:
    """One buffered long-SMS part."""
    key: str
    account_id: str
    src_id: str
    dests: tuple[str, ...]
    ref: int
    total: int
    seq: int
    msg_ids: tuple[int, ...]     # this part's Msg_Id per recipient
    payload: bytes               # content after the UDH
    msg_fmt: int
    registered_delivery: bool
    service_id: str
    fee_type: str
    fee_code: str
    received: float


# ---- what comes out -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    request_id: str
    decision_id: str
    account_id: str
    msg_id: int
    msg_ids: tuple[int, ...]
    dest: str
    src_id: str
    service_id: str
    content: bytes
    udh: bytes
    msg_fmt: int
    channel_id: str
    segments: int
    registered_delivery: bool
    submit_time: float
    state: str
    upstream_msg_id: str | None
    attempts: int
    updated: float


@dataclass(frozen=True, slots=True)
class ReportRow:
    id: int
    account_id: str
    msg_id: int
    dest: str
    stat: str
    submit_time: float
    done_time: float
    src_id: str
    service_id: str
    attempts: int
    deliver_msg_id: int | None   # set once sent; a resend reuses it


@dataclass(frozen=True, slots=True)
class MoRow:
    id: int
    account_id: str
    dest_id: str
    src_terminal_id: str
    service_id: str
    content: bytes
    msg_fmt: int
    tp_udhi: int
    received: float
    attempts: int
    deliver_msg_id: int | None


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns added to a table after a store file was created (CREATE TABLE IF NOT EXISTS
    leaves an existing table as it is). Another process may add one at the same moment."""
    have = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
    if "not_before" not in have:
        try:
            db.execute("ALTER TABLE outbox ADD COLUMN not_before REAL NOT NULL DEFAULT 0")
        except sqlite3.OperationalError:
            if "not_before" not in {r[1] for r in db.execute("PRAGMA table_info(outbox)")}:
                raise


def _ids(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split())


def _id_text(ids: Iterable[int]) -> str:
    return " ".join(str(i) for i in ids)


_OUTBOX_COLS = ("id, request_id, decision_id, account_id, msg_id, msg_ids, dest, src_id, service_id,"
                " content, udh, msg_fmt, channel_id, segments, registered_delivery, submit_time,"
                " state, upstream_msg_id, attempts, updated")


def _outbox_row(r: tuple) -> OutboxRow:
    return OutboxRow(r[0], r[1], r[2], r[3], int(r[4]), _ids(r[5]), r[6], r[7], r[8], r[9], r[10],
                     r[11], r[12], r[13], bool(r[14]), r[15], r[16], r[17], r[18], r[19])


class GatewayStore:
    def __init__(self, path: str | os.PathLike, busy_timeout: float = 5.0,
                 background_checkpoint: bool = False):
        """background_checkpoint: WAL checkpoints in a thread of their own instead of inside
        this connection's commits (for an event loop that commits on its own thread: the
        front-end answers SUBMITs after its commits)."""
        self.path = os.fspath(path)
        self._db = open_shared(self.path, _SCHEMA, busy_timeout,
                               autocheckpoint=not background_checkpoint)
        _add_missing_columns(self._db)
        self._checkpointer = Checkpointer(self.path, busy_timeout) if background_checkpoint else None

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._db.close()

    def _tx(self):
        return transaction(self._db)

    def data_version(self) -> int:
        """Changes whenever another connection (another process) committed to the file since
        the last call; this connection's own commits leave it alone. Costs no disk read."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    # ================================================================ front-end: submits

    def accept_message(self, msg: Message, recipients: Sequence[Recipient],
                       parts_key: str | None = None) -> int:
        """Store the outcome of one evaluated message in one transaction.

        accept -> outbox (pending), hold -> outbox (held), reject -> one report per Msg_Id of
        the recipient, Stat = its code. With `parts_key`, the buffered parts the message was
        reassembled from are dropped in the same transaction. Returns the number of reports
        that need delivering (0 when the customer asked for none).
        """
        return self.accept_messages([(msg, recipients, parts_key)])[0]

    def accept_messages(self, items: Sequence[tuple[Message, Sequence[Recipient], str | None]]
                        ) -> list[int]:
        """accept_message for several messages in one transaction (group commit): all are
        stored or none. Returns each message's number of reports to deliver."""
        now = time.time()
        outbox, reports, keys, due = [], [], [], []
        for msg, recipients, parts_key in items:
            rejected = 0
            for r in recipients:
                if r.action == "reject":
                    rejected += len(r.msg_ids)
                    reports.extend(
                        (msg.account_id, str(mid), r.dest, r.stat, msg.submit_time, now,
                         int(msg.registered_delivery), msg.src_id, msg.service_id,
                         "pending" if msg.registered_delivery else "acked")
                        for mid in r.msg_ids)
                else:
                    state = "held" if r.action == "hold" else "pending"
                    outbox.append((msg.request_id, msg.decision_id, msg.account_id,
                                   str(r.msg_ids[0]), _id_text(r.msg_ids), r.dest, msg.src_id,
                                   msg.service_id, msg.content, msg.udh, msg.msg_fmt,
                                   r.channel_id, r.segments, int(msg.registered_delivery),
                                   msg.submit_time, state, now, msg.not_before))
            if parts_key is not None:
                keys.append((parts_key,))
            due.append(rejected if msg.registered_delivery else 0)
        with self._tx() as db:
            if outbox:
                db.executemany(
                    "INSERT INTO outbox (request_id, decision_id, account_id, msg_id, msg_ids, dest,"
                    " src_id, service_id, content, udh, msg_fmt, channel_id, segments,"
                    " registered_delivery, submit_time, state, updated, not_before)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", outbox)
            if reports:
                self._insert_reports(db, reports)
            if keys:
                db.executemany("DELETE FROM parts WHERE key = ?", keys)
        return due

    def add_reports(self, reports: Sequence[NewReport], parts_key: str | None = None) -> int:
        """Reports the front-end produces itself (long SMS timed out, duplicate part, refused
        as a whole), optionally dropping buffered parts in the same transaction. Returns how
        many need delivering."""
        rows = [(r.account_id, str(r.msg_id), r.dest, r.stat, r.submit_time, r.done_time,
                 int(r.registered_delivery), r.src_id, r.service_id,
                 "pending" if r.registered_delivery else "acked") for r in reports]
        with self._tx() as db:
            self._insert_reports(db, rows)
            if parts_key is not None:
                db.execute("DELETE FROM parts WHERE key = ?", (parts_key,))
        return sum(1 for r in reports if r.registered_delivery)

    @staticmethod
    def _insert_reports(db: sqlite3.Connection, rows: list[tuple]) -> None:
        db.executemany(
            "INSERT INTO reports (account_id, msg_id, dest, stat, submit_time, done_time,"
            " registered_delivery, src_id, service_id, state) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def cancel(self, account_id: str, msg_id: int) -> bool:
        """CMPP_CANCEL: drop a message not yet handed to a forwarder. True if one was."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE outbox SET state = 'done', updated = ? WHERE account_id = ? AND msg_id = ?"
                " AND state IN ('pending', 'held')", (time.time(), account_id, str(msg_id)))
        return cur.rowcount > 0

    def query_counts(self, account_id: str, start: float, end: float,
                     service_id: str | None = None) -> dict[str, int]:
        """CMPP_QUERY figures for submits received in [start, end): messages, distinct
        recipients, delivered, waiting, failed; MO received, delivered to the customer,
        waiting, failed. With `service_id` (Query_Type 1), only that Service_Id's."""
        db = self._db
        svc, args = "", ()
        if service_id is not None:
            svc, args = " AND service_id = ?", (service_id,)
        scope = (account_id, start, end, *args)
        total, users = db.execute(
            "SELECT count(*), count(DISTINCT dest) FROM ("
            " SELECT dest FROM outbox WHERE account_id = ? AND submit_time >= ? AND submit_time < ?"
            + svc + " UNION ALL SELECT dest FROM reports WHERE account_id = ? AND submit_time >= ?"
            " AND submit_time < ?" + svc + " AND stat LIKE 'MA:%')", scope + scope).fetchone()
        waiting, = db.execute(
            "SELECT count(*) FROM outbox WHERE account_id = ? AND submit_time >= ?"
            " AND submit_time < ?" + svc + " AND state != 'done'", scope).fetchone()
        delivered, reported = db.execute(
            "SELECT count(DISTINCT msg_id) FILTER (WHERE stat = 'DELIVRD'), count(DISTINCT msg_id)"
            " FROM reports WHERE account_id = ? AND submit_time >= ? AND submit_time < ?" + svc,
            scope).fetchone()
        mo_ok, mo_wait, mo_failed = db.execute(
            "SELECT count(*) FILTER (WHERE state = 'acked'),"
            " count(*) FILTER (WHERE state NOT IN ('acked', 'failed')),"
            " count(*) FILTER (WHERE state = 'failed')"
            " FROM mo WHERE account_id = ? AND received >= ? AND received < ?" + svc,
            scope).fetchone()
        return {"mt_tlmsg": total, "mt_tlusr": users, "mt_scs": delivered, "mt_wt": waiting,
                "mt_fl": reported - delivered, "mo_scs": mo_ok, "mo_wt": mo_wait,
                "mo_fl": mo_failed}

    # ================================================================ front-end: long SMS

    def buffer_part(self, p: Part) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO parts (key, account_id, src_id, dests, ref, total, seq, msg_ids,"
                " payload, msg_fmt, registered_delivery, service_id, fee_type, fee_code, received)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (p.key, p.account_id, p.src_id, "\n".join(p.dests), p.ref, p.total, p.seq,
                 _id_text(p.msg_ids), p.payload, p.msg_fmt, int(p.registered_delivery),
                 p.service_id, p.fee_type, p.fee_code, p.received))

    def buffered_parts(self) -> list[Part]:
        """Every buffered part, oldest first (the front-end reloads them at start)."""
        rows = self._db.execute(
            "SELECT key, account_id, src_id, dests, ref, total, seq, msg_ids, payload, msg_fmt,"
            " registered_delivery, service_id, fee_type, fee_code, received FROM parts ORDER BY id")
        return [Part(r[0], r[1], r[2], tuple(r[3].split("\n")), r[4], r[5], r[6], _ids(r[7]),
                     r[8], r[9], bool(r[10]), r[11], r[12], r[13], r[14]) for r in rows]

    # ================================================================ front-end: delivery

    def pending_reports(self, account_id: str, now: float, limit: int,
                        max_attempts: int) -> list[ReportRow]:
        """Reports to (re)send now: never sent, or sent without DELIVER_RESP, due again and
        sent fewer than `max_attempts` times."""
        rows = self._db.execute(
            "SELECT id, account_id, msg_id, dest, stat, submit_time, done_time, src_id, service_id,"
            " attempts, deliver_msg_id FROM reports WHERE account_id = ?"
            " AND state IN ('pending', 'sent') AND next_attempt <= ? AND attempts < ?"
            " ORDER BY id LIMIT ?", (account_id, now, max_attempts, limit))
        return [ReportRow(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                          int(r[10]) if r[10] is not None else None) for r in rows]

    def mark_reports_sent(self, sent: Sequence[tuple[int, int]], next_attempt: float) -> None:
        """(report id, deliver Msg_Id) pairs just written to a customer connection."""
        with self._tx() as db:
            db.executemany(
                "UPDATE reports SET state = 'sent', attempts = attempts + 1, next_attempt = ?,"
                " deliver_msg_id = ? WHERE id = ?",
                [(next_attempt, str(deliver_msg_id), rid) for rid, deliver_msg_id in sent])

    def mark_report_sent(self, report_id: int, deliver_msg_id: int, next_attempt: float) -> None:
        self.mark_reports_sent([(report_id, deliver_msg_id)], next_attempt)

    def ack_report(self, account_id: str, deliver_msg_id: int) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE reports SET state = 'acked' WHERE deliver_msg_id = ?"
                             " AND account_id = ? AND state = 'sent'",
                             (str(deliver_msg_id), account_id))
        return cur.rowcount > 0

    def ack_deliveries(self, account_id: str, deliver_msg_ids: Sequence[int]) -> int:
        """DELIVER_RESP Result 0 for several DELIVERs of one account (reports or MO) in one
        transaction: the front-end acknowledges what one turn of its loop read at once, instead
        of one commit per report. Returns how many were acknowledged (unknown, other accounts'
        or already acknowledged ids are skipped)."""
        acked = 0
        with self._tx() as db:
            for deliver_msg_id in deliver_msg_ids:
                key = (str(deliver_msg_id), account_id)
                for table in ("reports", "mo"):
                    cur = db.execute(f"UPDATE {table} SET state = 'acked' WHERE deliver_msg_id = ?"
                                     f" AND account_id = ? AND state = 'sent'", key)
                    if cur.rowcount:
                        acked += 1
                        break
        return acked

    def fail_reports(self, report_ids: Sequence[int]) -> None:
        """Reports that cannot be encoded as a DELIVER: state 'failed', out of the delivery
        queue (the front-end logs each as an error)."""
        with self._tx() as db:
            db.executemany("UPDATE reports SET state = 'failed' WHERE id = ?"
                           " AND state IN ('pending', 'sent')", [(i,) for i in report_ids])

    def fail_mo(self, mo_ids: Sequence[int]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE mo SET state = 'failed' WHERE id = ?"
                           " AND state IN ('pending', 'sent')", [(i,) for i in mo_ids])

    def rearm(self, account_id: str, max_attempts: int) -> None:
        """At login: reports and MO that used up their sends (`max_attempts`, the N of the
        resend timer) become due again, so that a customer who was offline (or didn't answer)
        gets them on the new connection. Those still within their sends are left to their
        timer (they are resent on any connection of the account when it runs out): a second
        connection must not bring a DELIVER the first may still answer at once again."""
        with self._tx() as db:
            for table in ("reports", "mo"):
                db.execute(f"UPDATE {table} SET attempts = 0, next_attempt = 0"
                           f" WHERE account_id = ? AND state = 'sent' AND attempts >= ?",
                           (account_id, max_attempts))

    def pending_mo(self, account_id: str, now: float, limit: int, max_attempts: int) -> list[MoRow]:
        rows = self._db.execute(
            "SELECT id, account_id, dest_id, src_terminal_id, service_id, content, msg_fmt, tp_udhi,"
            " received, attempts, deliver_msg_id FROM mo WHERE account_id = ?"
            " AND state IN ('pending', 'sent') AND next_attempt <= ? AND attempts < ?"
            " ORDER BY id LIMIT ?", (account_id, now, max_attempts, limit))
        return [MoRow(*r[:10], int(r[10]) if r[10] is not None else None) for r in rows]

    def mark_mo_sent(self, sent: Sequence[tuple[int, int]], next_attempt: float) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE mo SET state = 'sent', attempts = attempts + 1, next_attempt = ?,"
                " deliver_msg_id = ? WHERE id = ?",
                [(next_attempt, str(deliver_msg_id), mid) for mid, deliver_msg_id in sent])

    def ack_mo(self, account_id: str, deliver_msg_id: int) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE mo SET state = 'acked' WHERE deliver_msg_id = ?"
                             " AND account_id = ? AND state = 'sent'",
                             (str(deliver_msg_id), account_id))
        return cur.rowcount > 0

    # ================================================================ forwarder

    def claim_outbox(self, channel_id: str, limit: int) -> list[OutboxRow]:
        """Up to `limit` pending rows of the channel, oldest first, now in state 'sending'.
        Scheduled rows (At_Time) only once their time has come.

        Several forwarders may claim at once; the write lock makes each row go to one.
        """
        now = time.time()
        with self._tx() as db:
            rows = db.execute(f"SELECT {_OUTBOX_COLS} FROM outbox WHERE channel_id = ?"
                              f" AND state = 'pending' AND not_before <= ? ORDER BY id LIMIT ?",
                              (channel_id, now, limit)).fetchall()
            db.executemany("UPDATE outbox SET state = 'sending', attempts = attempts + 1,"
                           " updated = ? WHERE id = ?", [(now, r[0]) for r in rows])
        return [_outbox_row((*r[:16], "sending", r[17], r[18] + 1, now)) for r in rows]

    def mark_sent(self, outbox_id: int, upstream_msg_id: int | str) -> None:
        """The upstream answered SUBMIT_RESP 0 with `upstream_msg_id`; its report will come."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET state = 'sent', upstream_msg_id = ?, updated = ?"
                       " WHERE id = ?", (str(upstream_msg_id), time.time(), outbox_id))

    def outbox_by_upstream(self, channel_id: str, upstream_msg_id: int | str) -> OutboxRow | None:
        """The row an upstream status report belongs to."""
        r = self._db.execute(f"SELECT {_OUTBOX_COLS} FROM outbox WHERE channel_id = ?"
                             f" AND upstream_msg_id = ? ORDER BY id DESC LIMIT 1",
                             (channel_id, str(upstream_msg_id))).fetchone()
        return _outbox_row(r) if r else None

    def finish(self, outbox_id: int, stat: str, done_time: float | None = None) -> bool:
        """Final state of a forwarded (or failed) message: row done, and in the same
        transaction one report per customer Msg_Id of it (one per part of a long SMS).
        False if the row was already done (a duplicate upstream report)."""
        return self._finish(outbox_id, stat, done_time, ("pending", "sending", "sent"))

    def requeue(self, outbox_id: int) -> None:
        """Give a claimed or sent row back for another attempt (upstream failure, restart)."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET state = 'pending', upstream_msg_id = NULL, updated = ?"
                       " WHERE id = ? AND state IN ('sending', 'sent')", (time.time(), outbox_id))

    def requeue_claimed(self, channel_id: str | None = None) -> int:
        """At forwarder start: rows left in 'sending' by a forwarder that died go back to
        pending (they never reached the upstream, or did without an answer: at-least-once)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE outbox SET state = 'pending', updated = ? WHERE state = 'sending'"
                + ("" if channel_id is None else " AND channel_id = ?"),
                (time.time(),) if channel_id is None else (time.time(), channel_id))
        return cur.rowcount

    def held_messages(self, limit: int = 1000) -> list[OutboxRow]:
        rows = self._db.execute(f"SELECT {_OUTBOX_COLS} FROM outbox WHERE state = 'held'"
                                f" ORDER BY id LIMIT ?", (limit,))
        return [_outbox_row(r) for r in rows]

    def approve(self, outbox_id: int) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE outbox SET state = 'pending', updated = ?"
                             " WHERE id = ? AND state = 'held'", (time.time(), outbox_id))
        return cur.rowcount > 0

    def reject_held(self, outbox_id: int, done_time: float | None = None) -> bool:
        """Manual audit refused a held message: done, with MA:0006 reports."""
        return self._finish(outbox_id, HELD_REJECT_STAT, done_time, ("held",))

    def _finish(self, outbox_id: int, stat: str, done_time: float | None,
                from_states: tuple[str, ...]) -> bool:
        done_time = time.time() if done_time is None else done_time
        marks = ",".join("?" * len(from_states))
        with self._tx() as db:
            r = db.execute(f"SELECT account_id, msg_ids, dest, submit_time, registered_delivery,"
                           f" src_id, service_id FROM outbox WHERE id = ? AND state IN ({marks})",
                           (outbox_id, *from_states)).fetchone()
            if r is None:
                return False
            account_id, msg_ids, dest, submit_time, rd, src_id, service_id = r
            db.execute("UPDATE outbox SET state = 'done', updated = ? WHERE id = ?",
                       (done_time, outbox_id))
            self._insert_reports(db, [(account_id, mid, dest, stat, submit_time, done_time, rd,
                                       src_id, service_id, "pending" if rd else "acked")
                                      for mid in msg_ids.split()])
        return True

    def add_mo(self, account_id: str, dest_id: str, src_terminal_id: str, content: bytes,
               msg_fmt: int, service_id: str = "", tp_udhi: int = 0,
               received: float | None = None) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO mo (account_id, dest_id, src_terminal_id, service_id, content, msg_fmt,"
                " tp_udhi, received, state) VALUES (?,?,?,?,?,?,?,?, 'pending')",
                (account_id, dest_id, src_terminal_id, service_id, content, msg_fmt, tp_udhi,
                 time.time() if received is None else received))
        return cur.lastrowid
