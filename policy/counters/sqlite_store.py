"""Counters, balances and request ids in one SQLite file, "shared" mode (counters_sqlite_mode).

The embedded default is the exclusive mode (policy.counters.sqlite_exclusive: one owner,
decisions from memory, group commit); this mode is for several processes on one file. Both use
the schema and connection set-up below, so a file can change mode between restarts.

Each charge is one BEGIN IMMEDIATE transaction, so it is atomic against other threads and
against other processes using the same file (several daemons behind SO_REUSEPORT). One connection
is shared by all threads behind a lock: SQLite serializes writers anyway, and the Python lock hands
over faster than SQLite's sleeping busy handler (8 threads: 66-72 us per charge with the lock,
71-98 us with a connection per thread). Group commit (a writer thread committing whatever queued
up) measured worse on two cores: thread hand-offs under the GIL cost more than the commits saved;
here every charge must read the file afresh anyway, as other processes write it. (The exclusive
mode's group commit has no writer thread: the first waiter commits.)

A charge costs five statements (six when debiting): BEGIN, one SELECT of every value it needs,
an INSERT of the request record, one multi-row upsert of the counter increments, COMMIT. The
statement count matters: each releases the GIL and must win it back from busy request threads.

WAL with synchronous=NORMAL: a committed charge survives a crash of the process; a power loss
may drop the last few commits, never corrupt the file. Small pages keep the WAL frames each
commit writes small. Expired buckets and request ids are deleted in batches inside charge
transactions, in proportion to the rows charges insert, so the file stays bounded without a
sweeper thread.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from functools import lru_cache

from ..sqlite_wal import Checkpointer
from . import owner, record
from .model import IDEMPOTENCY_TTL, ChargeResult, CounterStoreError, RecipientCharge
from .walk import Walk, bucket_ranges

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    base TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    value INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (base, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counters_expiry ON counters (expires_at);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    record TEXT,
    response BLOB,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_expiry ON requests (expires_at);
CREATE TABLE IF NOT EXISTS balances (
    account TEXT PRIMARY KEY,
    balance INTEGER NOT NULL
) WITHOUT ROWID;
"""

READS_PER_STATEMENT = 100     # scalar subqueries per SELECT (group sends read more in chunks)
ROWS_PER_UPSERT = 200         # rows per multi-row INSERT
SWEEP_EVERY = 512             # rows written between two sweeps
SWEEP_BATCH = 2 * SWEEP_EVERY  # rows deleted per sweep and table: faster than they are written

_COUNTER = "(SELECT coalesce(sum(value), 0) FROM counters WHERE base = ? AND bucket BETWEEN ? AND ?)"


@lru_cache(maxsize=None)
def _first_read(counters: int) -> str:
    """Request record ('' = only a remembered answer, NULL = unknown id), balance, counter sums."""
    return ("SELECT (SELECT coalesce(record, '') FROM requests WHERE id = ? AND expires_at >= ?), "
            "(SELECT balance FROM balances WHERE account = ?)" + "".join(", " + _COUNTER for _ in range(counters)))


@lru_cache(maxsize=None)
def _more_reads(counters: int) -> str:
    return "SELECT " + ", ".join([_COUNTER] * counters)


@lru_cache(maxsize=None)
def _upsert(rows: int) -> str:
    return ("INSERT INTO counters (base, bucket, value, expires_at) VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * rows)
            + " ON CONFLICT (base, bucket) DO UPDATE SET value = value + excluded.value")


def _enable_wal(conn: sqlite3.Connection, path: str, timeout: float) -> None:
    """Switch to WAL, waiting out other processes opening the same new file at the same moment:
    the switch does not go through SQLite's busy handler, it fails at once with SQLITE_BUSY."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode == "wal":
                return
            problem = f"journal_mode stays {mode!r}"
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            problem = str(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path}: cannot switch the counter store to WAL mode: {problem}")
        time.sleep(0.005)


def open_connection(path: str, busy_timeout_ms: int, page_size: int = 1024,
                    expiry_index: bool = True) -> sqlite3.Connection:
    """A connection to the counter file with the pragmas and schema every mode relies on.

    expiry_index=False (exclusive mode) drops counters_expiry: that mode sweeps counters by a
    rolling pass over the primary key instead, and the index cost as much as the table itself
    at every new bucket (5.0 against 10.2 us CPU per row inserted). Shared mode creates it again
    when it next opens the file."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           cached_statements=256)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute(f"PRAGMA page_size = {int(page_size)}")  # takes effect only on a new file; small pages keep each commit's WAL frames small
        if path != ":memory:":
            _enable_wal(conn, path, busy_timeout_ms / 1000)
        conn.execute("PRAGMA synchronous = NORMAL")
        if path != ":memory:":
            # Charges never checkpoint: a checkpoint fsyncs (milliseconds on this class of
            # disk), which amortized over charges was most of their cost. A background
            # thread checkpoints instead, off the caller's path.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA.split(";"):
            if statement.strip() and (expiry_index or "counters_expiry" not in statement):
                conn.execute(statement)
        if not expiry_index:
            conn.execute("DROP INDEX IF EXISTS counters_expiry")
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteCounterStore:
    """The "shared" mode: every charge is its own transaction on the file (see the module doc)."""
    mode = "shared"
    recall_in_charge = False   # the pipeline calls recall() before evaluating

    def __init__(self, path: str, *, busy_timeout_ms: int = 5000,
                 idempotency_ttl: int = IDEMPOTENCY_TTL):
        self.path = path
        self.idempotency_ttl = idempotency_ttl
        self._lock = threading.Lock()
        self._since_sweep = 0
        # an exclusive owner killed before its folder caught up left answered charges in its
        # journal only: into the tables with them before this mode, which never reads it
        from .sqlite_exclusive import fold_leftover_journal
        fold_leftover_journal(path, busy_timeout_ms)
        self._owner = owner.hold(path, exclusive=False)
        try:
            conn = open_connection(path, busy_timeout_ms)
        except BaseException:
            self._owner.release()
            raise
        self._conn = conn
        # the WAL is folded into the file off the charge path (policy.sqlite_wal)
        self._checkpointer = Checkpointer(path, busy_timeout_ms / 1000) if path != ":memory:" else None

    # --- charging -------------------------------------------------------------------------

    def charge(self, request_id: str, recipients: list[RecipientCharge], debit_account: str | None,
               price_per_segment: int, now: float, answer=None, wait: bool = True) -> ChargeResult:
        reads = bucket_ranges(recipients)
        keys = list(reads)
        clock = int(now)
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = self._charge(conn, request_id, recipients, debit_account,
                                          price_per_segment, clock, reads, keys, answer)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise CounterStoreError(f"{self.path}: charge of request {request_id!r} failed, "
                                        f"nothing applied: {exc}") from exc
        return result

    def _charge(self, conn, request_id, recipients, debit_account, price, clock, reads, keys,
                answer) -> ChargeResult:
        if self._since_sweep >= SWEEP_EVERY:
            self._sweep(clock)
        first = keys[:READS_PER_STATEMENT]
        row = conn.execute(_first_read(len(first)),
                           [request_id, clock, debit_account, *[p for k in first for p in reads[k]]]).fetchone()
        if row[0] is not None:
            response = conn.execute("SELECT response FROM requests WHERE id = ?", (request_id,)).fetchone()[0]
            return record.decode(row[0], replayed=True, stored_response=response)
        balance = row[1]
        stored = dict(zip(first, row[2:]))
        for i in range(READS_PER_STATEMENT, len(keys), READS_PER_STATEMENT):
            chunk = keys[i:i + READS_PER_STATEMENT]
            more = conn.execute(_more_reads(len(chunk)), [p for k in chunk for p in reads[k]]).fetchone()
            stored.update(zip(chunk, more))

        walk = Walk(recipients, stored)
        result = ChargeResult(ok_indexes=walk.ok, rejected=walk.rejected, values=walk.values)
        if debit_account is not None:
            debit = walk.segments * price
            result.balance_after = balance
            if debit > (balance or 0):
                result.insufficient_balance = True
                result.ok_indexes = []
            elif debit:
                conn.execute("UPDATE balances SET balance = ? WHERE account = ?", (balance - debit, debit_account))
                result.balance_after = balance - debit
        # the caller's answer goes into the same row and commit: one write transaction per
        # decision instead of charge + remember
        response = answer(result) if answer is not None else None
        conn.execute("INSERT OR REPLACE INTO requests (id, record, response, expires_at) VALUES (?, ?, ?, ?)",
                     (request_id, record.encode(result), response, clock + self.idempotency_ttl))
        if not result.insufficient_balance and walk.adds:
            rows = []
            for key, amount in walk.adds.items():
                base, _, bucket = reads[key]
                rows += (base, bucket, amount, clock + walk.ttls[key])
            for i in range(0, len(rows), 4 * ROWS_PER_UPSERT):
                chunk = rows[i:i + 4 * ROWS_PER_UPSERT]
                conn.execute(_upsert(len(chunk) // 4), chunk)
        self._since_sweep += 1 + len(walk.adds)
        return result

    def _sweep(self, clock: int) -> None:
        """Delete a batch of expired buckets and request ids (inside the caller's transaction)."""
        conn = self._conn
        gone = conn.execute("SELECT base, bucket FROM counters WHERE expires_at < ? LIMIT ?",
                            (clock, SWEEP_BATCH)).fetchall()
        conn.executemany("DELETE FROM counters WHERE base = ? AND bucket = ?", gone)
        ids = conn.execute("SELECT id FROM requests WHERE expires_at < ? LIMIT ?",
                           (clock, SWEEP_BATCH)).fetchall()
        conn.executemany("DELETE FROM requests WHERE id = ?", ids)
        self._since_sweep = 0

    def remember(self, request_id: str, response: bytes, ttl_seconds: int = IDEMPOTENCY_TTL,
                 now: float | None = None) -> None:
        expires = int(time.time() if now is None else now) + ttl_seconds
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO requests (id, record, response, expires_at) VALUES (?, NULL, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET response = excluded.response, "
                    "expires_at = max(expires_at, excluded.expires_at)",
                    (request_id, response, expires))
            except sqlite3.Error as exc:
                raise CounterStoreError(f"{self.path}: cannot store the answer to request {request_id!r}; "
                                        f"a retry replays the recorded decision instead: {exc}") from exc

    def recall(self, request_id: str, now: float | None = None) -> ChargeResult | None:
        clock = int(time.time() if now is None else now)
        with self._lock:
            row = self._conn.execute(
                "SELECT coalesce(record, ''), response FROM requests WHERE id = ? AND expires_at >= ?",
                (request_id, clock)).fetchone()
        return None if row is None else record.decode(row[0], replayed=True, stored_response=row[1])

    # --- balances ---------------------------------------------------------------------------

    def balance(self, account: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT balance FROM balances WHERE account = ?", (account,)).fetchone()
        return None if row is None else row[0]

    def top_up(self, account: str, amount: int) -> int:
        with self._lock:
            return self._conn.execute(
                "INSERT INTO balances (account, balance) VALUES (?, ?) ON CONFLICT (account) "
                "DO UPDATE SET balance = balance + excluded.balance RETURNING balance",
                (account, amount)).fetchone()[0]

    def set_opening_balance(self, account: str, amount: int) -> bool:
        """Give `account` its configured opening balance unless it already has one; True if set."""
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO balances (account, balance) VALUES (?, ?) ON CONFLICT (account) DO NOTHING",
                (account, amount))
            return cur.rowcount == 1

    # --- inspection -------------------------------------------------------------------------

    def peek(self, keys: list[str]) -> dict[str, int]:
        """The stored value of each exact bucket key (0 when absent); no window sums."""
        out = {}
        with self._lock:
            for key in keys:
                base, _, bucket = key.rpartition(":")
                row = self._conn.execute("SELECT value FROM counters WHERE base = ? AND bucket = ?",
                                         (base, int(bucket))).fetchone()
                out[key] = row[0] if row else 0
        return out

    def wait_durable(self, token: int) -> None:
        """Every charge is committed before charge() returns: nothing to wait for."""

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            self._conn.close()
        self._owner.release()
