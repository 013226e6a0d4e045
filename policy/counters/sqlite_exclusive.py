"""SQLite counters owned by one daemon: decisions in memory, an append-only journal on the
charge path, folded into the SQLite tables off it.

The shared mode (policy.counters.sqlite_store) pays a write transaction per charge: BEGIN
IMMEDIATE, reads, three writes, COMMIT, about 50 page writes, 100+ us, all under the store lock.
When one daemon owns the file (an OS lock enforces it, policy.counters.owner) none of that needs
to be on the decision's path:

* the charge decides from memory: counter buckets are cached per counter (all buckets of one
  base read in one SELECT the first time it is touched; from then on memory is the truth, as
  nobody else writes the file), balances likewise. The walk is the same code as shared mode's
  (policy.counters.walk). Bloom filters of the counter bases and request ids on file spare the
  SELECTs that would find nothing (new numbers, new request ids).
* every charge becomes a journal entry (counter deltas, balance delta, the request record and
  its stored answer), one frame in `<file>.charges`, written together with whatever else queued
  up (one os.write for many charges under concurrency or for a whole batch) by the first thread
  that needs it durable (see wait_durable: no writer thread).
* an answer is not released before its entry is written: charge() waits for it by default;
  a caller charging a batch passes wait=False and calls wait_durable() once for the last token.
  A written entry survives a crash of the process (kill -9), the same class as WAL with
  synchronous=NORMAL, which the tables use: a power loss may drop the last few.
* a folder thread applies the written entries to the tables every FOLD_EVERY seconds (or
  FOLD_MAX entries) in one transaction, which also records how far into the journal the tables
  are. With fold_process (the daemon's default) the folder thread only names the stretch of the
  journal, and a child process reads and folds it (policy.counters.fold_process), off the
  daemon's core. At open, entries past that position are folded first, then a new journal is started
  (policy.counters.sqlite_exclusive._Journal). A frame torn by a crash ends the journal: its
  charge was never answered.
* request ids live in SQLite (24 h of them do not fit in memory); only ids whose entry is not
  folded yet are kept in memory, where charges and recalls look first.

Memory stays bounded: counters whose last change is folded may be dropped from the cache at any
time (they are read again from the file), and the cache is trimmed to `cache_max` counters; at
most UNFOLDED_MAX entries wait for the folder (beyond, charges are refused until it catches up).

If a journal write fails, every charge not yet written fails (CounterStoreError: the caller
answers UNAVAILABLE, the client retries with the same request id), and memory is no longer
trusted: charges wait (up to RECOVER_WAIT, then fail the same way) until the folder has folded
every entry written before and started a new journal; then memory is dropped and read again from
the file. Nothing half-applied is ever trusted. A fold that fails (the file locked, disk full)
changes nothing: its entries stay in the journal and in memory and the folder tries again.
"""
from __future__ import annotations

import marshal
import os
import sqlite3
import struct
import threading
import time
import zlib

import orjson

from . import owner, record
from .model import IDEMPOTENCY_TTL, ChargeResult, CounterStoreError, RecipientCharge, StaleFold
from ..sqlite_wal import Checkpointer
from .sqlite_store import SWEEP_BATCH, SWEEP_EVERY, open_connection
from .walk import Walk, bucket_ranges

CACHE_MAX = 200_000        # counters (bases) kept in memory; folded ones beyond it are dropped
PAGE_SIZE = 4096           # new files only: folds write many rows per transaction
LEAD_ROUNDS = 4            # groups one writing thread writes back to back before waking waiters
GROUP_MAX = 1000           # entries queued that make the charging thread write them at once
BASES_PER_READ = 200       # bases per SELECT when a charge needs counters not in memory
FOLD_EVERY = 1.0           # seconds between folds of the journal into the tables
FOLD_MAX = 20000           # entries written that wake the folder before FOLD_EVERY
FOLD_RETRY = 0.1           # seconds before the folder tries a failed fold again
UNFOLDED_MAX = 200_000     # entries written but not folded beyond which charges are refused
RECOVER_WAIT = 1.0         # seconds a charge waits for memory to be trusted again (see above)
ROTATE_BYTES = 64 << 20    # journal size at which the folder starts a new one
JOURNAL_SUFFIX = ".charges"

_MAGIC = b"SMSPJRN1"
_HEADER = struct.Struct("<8sQ")   # magic, epoch
_FRAME = struct.Struct("<II")     # payload length, CRC-32 of the payload

# as shared mode's upsert: expires_at is set when the bucket is created (its window fixes it);
# updating it too would rewrite the expiry index entry of every counter at every fold
_UPSERT = ("INSERT INTO counters (base, bucket, value, expires_at) VALUES (?, ?, ?, ?) "
           "ON CONFLICT (base, bucket) DO UPDATE SET value = value + excluded.value")
_REQUEST = "INSERT OR REPLACE INTO requests (id, record, response, expires_at) VALUES (?, ?, ?, ?)"
_REMEMBER = ("INSERT INTO requests (id, record, response, expires_at) VALUES (?, NULL, ?, ?) "
             "ON CONFLICT (id) DO UPDATE SET response = excluded.response, "
             "expires_at = max(expires_at, excluded.expires_at)")
_DEBIT = "UPDATE balances SET balance = balance + ? WHERE account = ?"
_TOP_UP = ("INSERT INTO balances (account, balance) VALUES (?, ?) ON CONFLICT (account) "
           "DO UPDATE SET balance = balance + excluded.balance")
_OPENING = "INSERT INTO balances (account, balance) VALUES (?, ?) ON CONFLICT (account) DO NOTHING"
# a fold's rows as one JSON array (and its answers as one BLOB): see _fold
_FOLD_COUNTERS = ("INSERT INTO counters (base, bucket, value, expires_at) "
                  "SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?) WHERE true "
                  "ON CONFLICT (base, bucket) DO UPDATE SET value = value + excluded.value")
# (records are sliced from the BLOB too: as JSON strings inside the array they were parsed and
# unescaped once per column reference, 14 against 3.5 us per row)
_FOLD_REQUESTS = ("INSERT OR REPLACE INTO requests (id, record, response, expires_at) "
                  "SELECT value->>0, CAST(substr(?2, value->>1, value->>2) AS TEXT), "
                  "CASE WHEN value->>3 IS NULL THEN NULL ELSE substr(?2, value->>3, value->>4) END, "
                  "value->>5 FROM json_each(?1)")
_FOLD_REMEMBERS = ("INSERT INTO requests (id, record, response, expires_at) "
                   "SELECT value->>0, NULL, substr(?2, value->>1, value->>2), value->>3 FROM json_each(?1) "
                   "WHERE true ON CONFLICT (id) DO UPDATE SET response = excluded.response, "
                   "expires_at = max(expires_at, excluded.expires_at)")


def _json(rows: list) -> str:
    return orjson.dumps(rows).decode()

_DEBIT_OP, _TOP_UP_OP, _OPENING_OP = 0, 1, 2
_BALANCE_SQL = (_DEBIT, _TOP_UP, _OPENING)
_STATE_SCHEMA = ("CREATE TABLE IF NOT EXISTS journal_state (id INTEGER PRIMARY KEY CHECK (id = 0), "
                 "epoch INTEGER NOT NULL, position INTEGER NOT NULL)")
_STATE = ("INSERT INTO journal_state (id, epoch, position) VALUES (0, ?, ?) ON CONFLICT (id) "
          "DO UPDATE SET epoch = excluded.epoch, position = excluded.position")
_BASES = "SELECT DISTINCT base FROM counters"
_IDS = "SELECT id FROM requests"


class _Filter:
    """Which keys (counter bases, request ids) the file may hold: a Bloom filter, no false
    "absent".

    Most charges touch counters nobody used yet (per-number limits, new numbers), and every new
    request id is unknown: without this each cost a SELECT that finds nothing. Built from the
    file at open (one scan of a primary key), every key a charge adds goes in; rebuilt twice as
    large when it fills, so false "present" answers (a SELECT that finds nothing) stay rare.
    """

    def __init__(self, conn, query: str, expected: int = 0):
        self.query = query
        self.capacity = max(1 << 16, 2 * expected)
        self.mask = (1 << max(20, (self.capacity * 10).bit_length())) - 1  # >= 10 bits per key
        self.bits = bytearray((self.mask >> 3) + 1)
        self.count = 0
        for (key,) in conn.execute(query):
            self.add(key)

    def add(self, key: str) -> None:
        h = hash(key)
        step = (h >> 32) | 1
        bits, mask = self.bits, self.mask
        for i in (0, 1, 2):
            p = (h + i * step) & mask
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def __contains__(self, key: str) -> bool:
        h = hash(key)
        step = (h >> 32) | 1
        bits, mask = self.bits, self.mask
        for i in (0, 1, 2):
            p = (h + i * step) & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True

    @property
    def full(self) -> bool:
        return self.count > self.capacity


class _Entry:
    """One charge (or remember, top-up, opening balance) as the journal holds it."""
    __slots__ = ("gen", "clock", "request", "remember", "counters", "balance", "data", "end")

    def __init__(self, gen, clock):
        self.gen = gen
        self.clock = clock
        self.request = None        # (id, record, response, expires_at)
        self.remember = None       # (id, response, expires_at)
        self.counters = ()         # [(base, bucket, amount, expires_at)]
        self.balance = None        # (op, account, amount)
        self.data = b""            # the journal frame
        self.end = 0               # journal offset after this entry (set on the last of a write)

    def seal(self) -> None:
        payload = marshal.dumps((self.clock, self.request, self.remember, self.counters, self.balance))
        self.data = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload

    @classmethod
    def load(cls, payload: bytes) -> "_Entry":
        entry = cls(0, 0)
        entry.clock, entry.request, entry.remember, entry.counters, entry.balance = marshal.loads(payload)
        return entry


def _entries(data: bytes, pos: int, end: int) -> list[_Entry]:
    """The whole frames of data[pos:end]; the first torn or corrupt one ends them."""
    entries = []
    while pos + _FRAME.size <= end:
        n, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size:pos + _FRAME.size + n]
        if len(body) < n or zlib.crc32(body) != crc:
            break
        entries.append(_Entry.load(body))
        pos += _FRAME.size + n
    return entries


def read_journal_range(path: str, start: int, end: int) -> list[_Entry]:
    """The entries between two offsets of a journal file, all whole (where a fold process
    reads what it folds: what the daemon wrote there before asking)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    if len(data) != end - start:
        raise CounterStoreError(f"{path}: {end - start} bytes expected at offset {start}, {len(data)} there")
    return _entries(data, 0, len(data))


class _Journal:
    """`<counter file>.charges`: the entries written since the last fold, one frame each
    (length, CRC-32, marshal payload) after a header naming its epoch.

    The SQLite file records (epoch, position): every entry of that epoch's journal before
    `position` is folded in. A journal of another epoch is entirely folded (a new epoch is
    recorded in the same transaction that folds the whole old journal, before the new file
    replaces it). A frame cut short or with a wrong CRC ends the journal: a write the crash
    interrupted, whose charges were never answered.
    """

    def __init__(self, path: str):
        self.path = path + JOURNAL_SUFFIX
        self.fd: int | None = None
        self.size = 0
        self.epoch = 0
        self.broken: str | None = None   # set after a failed append: nothing more goes to this file

    def read_tail(self, epoch: int, position: int) -> list[_Entry]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        if len(data) < _HEADER.size:
            return []   # a new journal whose header never made it: it held nothing
        magic, file_epoch = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise CounterStoreError(f"{self.path}: not a counter journal (bad header); "
                                    f"move it away only if the counter file is known to be complete")
        if file_epoch != epoch:
            return []
        return _entries(data, max(position, _HEADER.size), len(data))

    def start(self, epoch: int) -> None:
        """Replace the journal by an empty one of `epoch` (the caller recorded the epoch first)."""
        tmp = self.path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            os.write(fd, _HEADER.pack(_MAGIC, epoch))
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            raise
        old, self.fd = self.fd, fd
        self.size, self.epoch, self.broken = _HEADER.size, epoch, None
        if old is not None:
            os.close(old)

    def append(self, data: bytes) -> None:
        if self.broken:
            raise OSError(f"the journal is being replaced after a failed write ({self.broken})")
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                done += os.write(self.fd, view[done:])
        except OSError as exc:
            # a torn frame would end the journal at replay, hiding every later one: no more
            # appends to this file; the folder starts a new journal
            self.broken = str(exc)
            raise
        self.size += len(data)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class _NoJournal(_Journal):
    """":memory:" files: nothing survives the process anyway."""

    def __init__(self):
        super().__init__(":memory:")

    def read_tail(self, epoch, position):
        return []

    def start(self, epoch):
        self.size, self.epoch, self.broken = _HEADER.size, epoch, None

    def append(self, data):
        if self.broken:
            raise OSError(self.broken)
        self.size += len(data)


class _Folder:
    """The SQL side of a fold, on the connection that writes the tables: in the store's folder
    thread, or in a fold process (policy.counters.fold_process) that reads the entries from the
    journal itself. Holds the rolling sweep's place."""

    def __init__(self, conn, sweep_every: int | None = None, sweep_batch: int | None = None):
        self.conn = conn
        self.sweep_every = SWEEP_EVERY if sweep_every is None else sweep_every
        self.sweep_batch = SWEEP_BATCH if sweep_batch is None else sweep_batch
        self.since_sweep = 0
        self.swept_to: tuple[str, int] | None = None   # where the rolling counter sweep goes on

    def recorded(self) -> tuple[int, int]:
        """(epoch, position) the file records: every entry of that epoch's journal before
        `position` is in the tables."""
        row = self.conn.execute("SELECT epoch, position FROM journal_state WHERE id = 0").fetchone()
        return (0, 0) if row is None else tuple(row)

    def fold(self, group: list[_Entry], epoch: int, position: int,
             basis: tuple[int, int] | None = None) -> None:
        """Apply `group` to the SQLite tables and record the journal position, in one transaction.

        `basis`, the (epoch, position) the group starts from, is checked against the file inside
        the transaction: a fold of a stretch the file already holds (a fold process that died
        after its COMMIT, then asked again; an orphaned one still folding for a killed daemon
        while a new owner replays) would count it twice. The file at (epoch, position) already:
        nothing to do. At anything else but `basis`: StaleFold, nothing applied.

        Rows go in as one JSON array per table (json_each), answers as one BLOB they slice:
        a handful of statements per fold, each one sqlite3 call with the GIL released for all
        of its rows. executemany takes the GIL back between rows, and next to a busy request
        thread each row waited out a GIL switch interval (5 ms): one fold of 5,000 rows ran
        for seconds instead of 60 ms (bench/counters_micro.py, fold rows).
        """
        conn = self.conn
        requests, remembers, blobs = [], [], []
        debits: dict[str, int] = {}
        balances = []
        size = 1   # substr() counts from 1
        # one row per counter bucket and fold: a fold's charges mostly share the account's and
        # the channel's counters, so it writes far fewer rows than it has increments
        deltas: dict[tuple[str, int], list[int]] = {}
        for e in group:
            if e.request is not None:
                rid, rec, response, expires = e.request
                rec = rec.encode()
                blobs.append(rec)
                if response is None:
                    requests.append((rid, size, len(rec), None, 0, expires))
                    size += len(rec)
                else:
                    requests.append((rid, size, len(rec), size + len(rec), len(response), expires))
                    blobs.append(response)
                    size += len(rec) + len(response)
            if e.remember is not None:
                rid, response, expires = e.remember
                remembers.append((rid, size, len(response), expires))
                blobs.append(response)
                size += len(response)
            for base, bucket, amount, expires in e.counters:
                d = deltas.get((base, bucket))
                if d is None:
                    deltas[(base, bucket)] = [amount, expires]
                else:
                    d[0] += amount
            if e.balance is not None:
                op, account, amount = e.balance
                if op == _DEBIT_OP:  # debits are deltas: one per account, after the rows below
                    debits[account] = debits.get(account, 0) + amount
                else:  # openings and top-ups precede any debit of their account in memory too
                    balances.append((_BALANCE_SQL[op], (account, amount)))
        counters = [(base, bucket, amount, expires) for (base, bucket), (amount, expires) in deltas.items()]
        blob = b"".join(blobs)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if basis is not None:
                now = self.recorded()
                if now == (epoch, position):
                    conn.execute("ROLLBACK")
                    return
                if now != tuple(basis):
                    raise StaleFold(f"the counter file records journal {now}, this fold starts at "
                                    f"{tuple(basis)}: another process folded this stretch; nothing applied")
            self.since_sweep += len(requests) + len(counters)
            if group and self.since_sweep >= self.sweep_every:
                self.sweep(conn, max(e.clock for e in group))
            if counters:
                conn.execute(_FOLD_COUNTERS, (_json(counters),))
            for sql, args in balances:
                conn.execute(sql, args)
            if debits:
                conn.executemany(_DEBIT, [(amount, account) for account, amount in debits.items()])
            if requests:
                conn.execute(_FOLD_REQUESTS, (_json(requests), blob))
            if remembers:
                conn.execute(_FOLD_REMEMBERS, (_json(remembers), blob))
            conn.execute(_STATE, (epoch, position))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def sweep(self, conn, clock: int) -> None:
        """Delete expired rows, at least twice as many rows looked at as were written since the
        last sweep, so the tables stay bounded (about 1.5x their live rows).

        Counters have no expiry index here (see open_connection): a rolling pass over the
        primary key, the next stretch of rows each time, wrapping at the end. Request ids keep
        theirs (one row per charge, folded in id order)."""
        n = max(self.sweep_batch, 2 * self.since_sweep)
        start = self.swept_to or ("", -(1 << 63))
        end = conn.execute("SELECT base, bucket FROM counters WHERE (base, bucket) > (?, ?) "
                           "ORDER BY base, bucket LIMIT 1 OFFSET ?", (*start, n - 1)).fetchone()
        if end is None:  # the rest of the table; the next sweep starts again from the top
            conn.execute("DELETE FROM counters WHERE (base, bucket) > (?, ?) AND expires_at < ?",
                         (*start, clock))
        else:
            conn.execute("DELETE FROM counters WHERE (base, bucket) > (?, ?) AND (base, bucket) <= (?, ?) "
                         "AND expires_at < ?", (*start, *end, clock))
        self.swept_to = None if end is None else tuple(end)
        conn.execute("DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE expires_at < ? "
                     "LIMIT ?)", (clock, n))
        self.since_sweep = 0


def replay_journal(folder: _Folder, journal: _Journal) -> int:
    """Fold what `journal` holds past the position the file records, recording the next epoch
    (which the caller starts the new journal with) in the same transaction; returns it.

    The fold process of a daemon killed -9 outlives it for a moment and may still commit a fold
    it was given: the basis check makes this replay read again rather than fold it twice."""
    for _ in range(100):
        epoch, position = folder.recorded()
        entries = journal.read_tail(epoch, position)
        try:
            folder.fold(entries, epoch + 1, _HEADER.size, basis=(epoch, position))
            return epoch + 1
        except StaleFold:
            time.sleep(0.05)
    raise CounterStoreError(f"{journal.path}: the counter file kept changing under the replay "
                            f"of its journal; is another process folding it?")


def fold_leftover_journal(path: str, busy_timeout_ms: int = 5000) -> None:
    """Before a shared-mode open: fold what an exclusive owner's journal still holds (the owner
    was killed before its folder caught up), so a file changing mode keeps every answered
    charge. Takes the owner lock exclusively for it; nothing to do without a journal."""
    journal = _Journal(path)
    if path == ":memory:" or not os.path.exists(journal.path):
        return
    try:
        held = owner.hold(path, exclusive=True)
    except owner.CounterFileBusy:
        return   # others have the file open: the first of them folded it, or will refuse us
    try:
        conn = open_connection(path, busy_timeout_ms, PAGE_SIZE, expiry_index=False)
        try:
            conn.execute(_STATE_SCHEMA)
            epoch = replay_journal(_Folder(conn), journal)
            journal.start(epoch)   # empty: what the file records stays true for the next owner
            journal.close()
        finally:
            conn.close()
    finally:
        held.release()


class ExclusiveSqliteCounterStore:
    mode = "exclusive"
    recall_in_charge = True   # charge() replays a known id itself; no separate recall needed

    def __init__(self, path: str, *, busy_timeout_ms: int = 5000,
                 idempotency_ttl: int = IDEMPOTENCY_TTL, cache_max: int = CACHE_MAX,
                 fold_process: bool = False):
        self.path = path
        self.idempotency_ttl = idempotency_ttl
        self.cache_max = cache_max
        self._owner = owner.hold(path, exclusive=True)
        self._read = self._write = None
        try:
            # the folder writes on its own connection, so charges read only committed state
            # (never a fold half done); a fold every FOLD_EVERY seconds costs the reader's
            # page cache little
            self._read = open_connection(path, busy_timeout_ms, PAGE_SIZE, expiry_index=False)
            self._write = (open_connection(path, busy_timeout_ms, PAGE_SIZE, expiry_index=False)
                           if path != ":memory:" else self._read)
            self._journal = _Journal(path) if path != ":memory:" else _NoJournal()
            self._sql = _Folder(self._write)
            self._replay()
        except BaseException:
            for conn in {id(c): c for c in (self._read, self._write) if c is not None}.values():
                conn.close()
            self._owner.release()
            raise
        self._filter = _Filter(self._read, _BASES)
        self._ids = _Filter(self._read, _IDS)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)       # waiters for the journal
        self._fold_cond = threading.Condition(self._lock)  # the folder
        self._values: dict[str, dict[int, int]] = {}   # base -> {bucket: value}
        self._touched: dict[str, int] = {}             # base -> gen of its last change
        self._balances: dict[str, int | None] = {}
        self._pending: dict[str, list] = {}            # request id -> [record, response, gen], until folded
        self._queue: list[_Entry] = []                 # charged, not yet in the journal
        self._unfolded: list[_Entry] = []              # in the journal, not yet in SQLite
        self._gen = 0
        self._durable = 0                              # every entry up to this gen is written (or failed)
        self._folded = 0                               # every entry up to this gen is in SQLite
        self._failed: list[tuple[int, int, str]] = []  # (first gen, last gen, why)
        self._closing = False
        self._committing = False                       # a thread holds the journal (writing, or replacing it)
        self._folding = False
        self._hurry = False                            # someone waits for a fold: do not sleep first
        self._stale = False                            # a write failed: memory waits for the file to catch up
        self._rotate = False                           # the folder must start a new journal
        self._fold_error: str | None = None
        self._fold_pos = _HEADER.size                  # the current journal is folded up to here
        # folds in a child process (the daemon's choice): their Python and SQLite work off the
        # daemon's core; the child reads the entries from the journal, this process only waits
        self._fold_process = None
        if fold_process and path != ":memory:":
            # (imported here: `python -m policy.counters.fold_process` must not find itself
            # imported already by its package)
            from .fold_process import FoldProcess
            self._fold_process = FoldProcess(path, busy_timeout_ms, self._sql.sweep_every,
                                             self._sql.sweep_batch)
        self._folder = threading.Thread(target=self._fold_loop, name="counter-fold", daemon=True)
        self._folder.start()
        # the WAL is folded into the file off the charge path (policy.sqlite_wal)
        self._checkpointer = Checkpointer(path, busy_timeout_ms / 1000) if path != ":memory:" else None

    def _replay(self) -> None:
        """Fold what the journal holds past the recorded position, then start a new journal."""
        self._write.execute(_STATE_SCHEMA)
        epoch = replay_journal(self._sql, self._journal)
        self._journal.start(epoch)

    # --- charging -------------------------------------------------------------------------

    def charge(self, request_id: str, recipients: list[RecipientCharge], debit_account: str | None,
               price_per_segment: int, now: float, answer=None, wait: bool = True) -> ChargeResult:
        reads = bucket_ranges(recipients)
        clock = int(now)
        with self._cond:
            self._usable()
            self._make_room()
            try:
                prior = self._known(request_id, clock)
                if prior is not None:
                    rec, response, gen = prior
                    result = record.decode(rec, replayed=True, stored_response=response)
                    result.durable = gen
                else:
                    result = self._charge(request_id, recipients, debit_account, price_per_segment,
                                          clock, reads, answer)
            except sqlite3.Error as exc:
                raise CounterStoreError(f"{self.path}: charge of request {request_id!r} failed, "
                                        f"nothing applied: {exc}") from exc
            full = len(self._queue) >= GROUP_MAX
            # a lone caller writes its own entry at once (wait_durable would take the lock again)
            group = self._take() if wait and result.durable > self._durable and not self._committing else None
        if group is not None:
            self._write_group(group)
        if wait:
            self.wait_durable(result.durable)
        elif full:
            self._flush()  # nobody waited for a while: keep the memory of pending entries bounded
        return result

    def _charge(self, request_id, recipients, debit_account, price, clock, reads, answer) -> ChargeResult:
        values = self._values
        missing = {base for base, _, _ in reads.values() if base not in values}
        if missing:
            self._load(missing)
            if self._filter.full:
                rebuilt = _Filter(self._read, _BASES, self._filter.count)
                for base in values:  # among them every base whose first rows are not folded yet
                    rebuilt.add(base)
                self._filter = rebuilt
        stored = {}
        for key, (base, lo, hi) in reads.items():
            buckets = values[base]
            if lo == hi:
                stored[key] = buckets.get(hi, 0)
            else:
                stored[key] = sum(v for b, v in buckets.items() if lo <= b <= hi)
        walk = Walk(recipients, stored)
        result = ChargeResult(ok_indexes=walk.ok, rejected=walk.rejected, values=walk.values)
        self._gen += 1
        entry = _Entry(self._gen, clock)
        if debit_account is not None:
            balance = self._balance(debit_account)
            debit = walk.segments * price
            result.balance_after = balance
            if debit > (balance or 0):
                result.insufficient_balance = True
                result.ok_indexes = []
            elif debit:
                self._balances[debit_account] = balance - debit
                result.balance_after = balance - debit
                entry.balance = (_DEBIT_OP, debit_account, -debit)
        response = answer(result) if answer is not None else None
        rec = record.encode(result)
        entry.request = (request_id, rec, response, clock + self.idempotency_ttl)
        if not result.insufficient_balance and walk.adds:
            rows = []
            touched = self._touched
            gen = entry.gen
            known = self._filter
            for key, amount in walk.adds.items():
                base, _, bucket = reads[key]
                buckets = values[base]
                if not buckets:  # maybe a new base: it will be on file once folded
                    known.add(base)
                buckets[bucket] = buckets.get(bucket, 0) + amount
                touched[base] = gen
                rows.append((base, bucket, amount, clock + walk.ttls[key]))
            entry.counters = rows
        self._pending[request_id] = [rec, response, entry.gen]
        self._add_id(request_id)
        result.durable = entry.gen
        self._enqueue(entry)
        return result

    def _load(self, bases: set[str]) -> None:
        values = self._values
        if len(values) + len(bases) > self.cache_max:
            self._trim(len(bases))
        known = self._filter
        names = []
        for base in bases:
            values[base] = {}
            if base in known:
                names.append(base)
        for i in range(0, len(names), BASES_PER_READ):
            chunk = names[i:i + BASES_PER_READ]
            rows = self._read.execute(
                "SELECT base, bucket, value FROM counters WHERE base IN (" + ",".join("?" * len(chunk)) + ")",
                chunk).fetchall()
            for base, bucket, value in rows:
                values[base][bucket] = value

    def _trim(self, room: int) -> None:
        """Drop folded counters, oldest loaded first, until `room` more fit under cache_max."""
        target = max(0, int(self.cache_max * 0.9) - room)
        folded = self._folded
        touched = self._touched
        for base in list(self._values):
            if len(self._values) <= target:
                break
            if touched.get(base, 0) <= folded:
                del self._values[base]
                touched.pop(base, None)

    def _balance(self, account: str) -> int | None:
        if account not in self._balances:
            row = self._read.execute("SELECT balance FROM balances WHERE account = ?", (account,)).fetchone()
            self._balances[account] = None if row is None else row[0]
        return self._balances[account]

    def _add_id(self, request_id: str) -> None:
        ids = self._ids
        ids.add(request_id)
        if ids.full:
            rebuilt = _Filter(self._read, _IDS, ids.count)
            for rid in self._pending:  # the ids not folded yet
                rebuilt.add(rid)
            self._ids = rebuilt

    def _known(self, request_id: str, clock: int):
        """(record, response, gen) of a request id charged or remembered before, else None."""
        pending = self._pending.get(request_id)
        if pending is not None:
            rec, response, gen = pending
            if rec is None:  # only an answer remembered since the last fold: the record is on file
                row = self._read.execute("SELECT record FROM requests WHERE id = ?", (request_id,)).fetchone()
                rec = row[0] if row else None
            return (rec or "", response, gen)
        if request_id not in self._ids:
            return None
        row = self._read.execute(
            "SELECT coalesce(record, ''), response FROM requests WHERE id = ? AND expires_at >= ?",
            (request_id, clock)).fetchone()
        return None if row is None else (row[0], row[1], 0)

    def _usable(self) -> None:
        """Refuse (CounterStoreError) while memory cannot be trusted: after a failed journal
        write until the folder has caught up and memory is dropped, or while the file lags too
        far behind. Waits up to RECOVER_WAIT for that. Call with the lock held."""
        if self._closing:
            raise CounterStoreError(f"{self.path}: the counter store is closed")
        if not self._stale and len(self._unfolded) <= UNFOLDED_MAX:
            return
        deadline = time.monotonic() + RECOVER_WAIT
        self._wake_folder()
        while self._stale or len(self._unfolded) > UNFOLDED_MAX:
            left = deadline - time.monotonic()
            if left <= 0 or self._closing:
                raise CounterStoreError(
                    f"{self.path}: the counter journal cannot be written or folded now, nothing "
                    f"applied; retrying with the same request id is safe: "
                    f"{self._fold_error or 'the folder is catching up'}")
            self._cond.wait(left)

    def _wake_folder(self) -> None:
        self._hurry = True
        self._fold_cond.notify()

    def _make_room(self) -> None:
        """With the cache full of counters whose changes are not folded yet (so not droppable),
        have the folder fold what is written and wait for it (bounded): the cache stays near
        cache_max. Call with the lock held, before deciding anything."""
        if len(self._values) < self.cache_max or self._folded >= self._durable:
            return
        target, deadline = self._durable, time.monotonic() + RECOVER_WAIT
        self._wake_folder()
        while self._folded < target and (self._unfolded or self._folding) and not self._fold_error:
            left = deadline - time.monotonic()
            if left <= 0:
                return  # the cache overshoots its bound for a while rather than fail a charge
            self._cond.wait(left)

    def _enqueue(self, entry: _Entry) -> None:
        entry.seal()
        self._queue.append(entry)

    def wait_durable(self, token: int) -> None:
        """Return once the journal entry `token` (ChargeResult.durable) is written; raise
        CounterStoreError if its write failed (nothing of it was applied).

        Group write without a writer thread: a waiter finding nobody writing writes everything
        queued itself (the leader), in one os.write; waiters arriving meanwhile wait for the
        leader, and the next of them writes what queued up during that write, and so on. A
        writer thread was measured first: its hand-offs under the GIL cost a lone caller two
        thread wake-ups per charge.
        """
        if not token or token <= self._durable and not self._failed:
            return
        while True:
            with self._cond:
                while True:
                    for first, last, why in self._failed:
                        if first <= token <= last:
                            raise CounterStoreError(
                                f"{self.path}: the charge could not be committed, nothing applied; "
                                f"retrying with the same request id is safe: {why}")
                    if token <= self._durable:
                        return
                    if not self._committing:
                        break
                    self._cond.wait()
                group = self._take()
            self._write_group(group)

    def _take(self) -> list:
        """The queued entries, for this thread to write (call with the lock held)."""
        group, self._queue = self._queue, []
        self._committing = True
        return group

    def _flush(self) -> None:
        with self._cond:
            while self._committing:
                self._cond.wait()
            if not self._queue:
                return
            group = self._take()
        self._write_group(group)

    def _write_group(self, group: list) -> None:
        journal = self._journal
        for round_ in range(LEAD_ROUNDS):
            if group:
                try:
                    journal.append(group[0].data if len(group) == 1 else b"".join([e.data for e in group]))
                except Exception as exc:  # noqa: BLE001 - every waiter of the group learns why
                    self._fail(group, exc)
                    return
            with self._cond:
                if group:
                    group[-1].end = journal.size
                    self._durable = group[-1].gen
                    self._unfolded.extend(group)
                    if len(self._unfolded) >= FOLD_MAX:
                        self._wake_folder()
                if self._queue and round_ < LEAD_ROUNDS - 1:
                    # what queued up during this write (other threads' charges, their callers
                    # now waiting): written by this thread at once, the waiters woken once
                    group, self._queue = self._queue, []
                    continue
                self._committing = False
                self._cond.notify_all()
                return

    def _fail(self, group: list[_Entry], exc: Exception) -> None:
        """The group is lost, and so is everything queued after it (decided on top of it): fail
        them all. Memory is not trusted again until the folder has folded every entry written
        before them and started a new journal; then it is dropped and read from the file."""
        with self._cond:
            self._queue = []
            self._failed.append((group[0].gen, self._gen, str(exc)))
            del self._failed[:-32]
            self._durable = max(self._durable, self._gen)  # nothing older is still in flight
            self._stale = True
            self._rotate = True
            self._committing = False
            self._fold_error = f"journal write failed: {exc}"
            self._cond.notify_all()
            self._wake_folder()

    # --- folding the journal into SQLite ---------------------------------------------------

    def _fold_loop(self) -> None:
        while True:
            with self._cond:
                if self._fold_error:
                    self._fold_cond.wait(FOLD_RETRY)
                elif not (self._closing or self._rotate or self._hurry or len(self._unfolded) >= FOLD_MAX):
                    self._fold_cond.wait(FOLD_EVERY)
                self._hurry = False
                closing = self._closing
                rotate = self._rotate or self._journal.size > ROTATE_BYTES
                if closing and not self._unfolded and not rotate:
                    return
                if rotate:  # nobody may write the old journal once its last entries are taken
                    while self._committing:
                        self._cond.wait()
                    self._committing = True
                group, self._unfolded = self._unfolded, []
                self._folding = True
            error = None
            if group or rotate:
                epoch = self._journal.epoch + 1 if rotate else self._journal.epoch
                target = (epoch, _HEADER.size if rotate else group[-1].end)
                try:
                    self._fold(group, *target)
                    self._fold_pos = group[-1].end if group else self._fold_pos
                except Exception as exc:  # noqa: BLE001 - the entries stay in the journal and in memory
                    rest = self._folded_anyway(group, target)
                    if rest is None or rest:
                        error = f"folding the journal into the counter file failed: {exc}"
                    if rest is not None:   # the front of the group is in the file after all
                        group = group[:len(group) - len(rest)]
                        if group:
                            self._fold_pos = group[-1].end
                    else:
                        rest, group = group, []
                    if rest:
                        with self._cond:
                            self._unfolded[:0] = rest
                if error is None and rotate:
                    try:
                        self._journal.start(epoch)
                        self._fold_pos = _HEADER.size
                    except Exception as exc:  # noqa: BLE001 - appends stay refused until it works
                        self._journal.broken = self._journal.broken or str(exc)
                        error = f"starting a new counter journal failed: {exc}"
            elif not self._fold_error:
                with self._cond:
                    self._folding = False
                continue
            with self._cond:
                if group:
                    last = group[-1].gen
                    self._folded = last
                    pending = self._pending
                    for e in group:
                        req = e.request or e.remember
                        if req is not None:
                            p = pending.get(req[0])
                            if p is not None and p[2] <= last:
                                del pending[req[0]]
                if rotate:
                    self._committing = False
                    if error is None:
                        self._rotate = False
                        if self._stale:  # every entry written is folded: the file is the truth
                            self._values.clear()
                            self._touched.clear()
                            self._balances.clear()
                            self._pending.clear()
                            self._stale = False
                self._folding = False
                self._fold_error = error
                self._cond.notify_all()
                if closing and error is not None:
                    return  # what is left is in the journal: the next open folds it

    def _fold(self, group: list[_Entry], epoch: int, position: int) -> None:
        """Apply `group`, the journal's entries from _fold_pos on, and record (epoch, position)."""
        basis = (self._journal.epoch, self._fold_pos)
        if self._fold_process is None:
            self._sql.fold(group, epoch, position, basis)
        else:
            end = group[-1].end if group else self._fold_pos
            self._fold_process.fold(self._journal.path, self._fold_pos, end, len(group), epoch,
                                    position, basis)

    def _folded_anyway(self, group: list[_Entry], target: tuple[int, int]) -> list[_Entry] | None:
        """After a failed fold: the entries of `group` the file does not hold yet (all of them
        unless a fold process died after its COMMIT, before its answer), or None when the file
        cannot tell (they are retried, and the basis check keeps a retry from counting twice)."""
        try:
            recorded = self._sql.recorded()
        except sqlite3.Error:
            return None
        if recorded == target:
            return []
        if recorded[0] == self._journal.epoch and recorded[1] > self._fold_pos:
            for i, e in enumerate(group):
                if e.end == recorded[1]:
                    return group[i + 1:]
        return group

    # --- the rest of the interface --------------------------------------------------------

    def remember(self, request_id: str, response: bytes, ttl_seconds: int = IDEMPOTENCY_TTL,
                 now: float | None = None) -> None:
        clock = int(time.time() if now is None else now)
        with self._cond:
            self._usable()
            self._gen += 1
            entry = _Entry(self._gen, clock)
            entry.remember = (request_id, response, clock + ttl_seconds)
            p = self._pending.get(request_id)
            self._pending[request_id] = [p[0] if p else None, response, entry.gen]
            self._add_id(request_id)
            self._enqueue(entry)
        self.wait_durable(entry.gen)

    def recall(self, request_id: str, now: float | None = None) -> ChargeResult | None:
        clock = int(time.time() if now is None else now)
        with self._cond:
            self._usable()
            try:
                prior = self._known(request_id, clock)
            except sqlite3.Error as exc:
                raise CounterStoreError(f"{self.path}: cannot read request {request_id!r}: {exc}") from exc
        if prior is None:
            return None
        self.wait_durable(prior[2])  # never replay an answer that is not on disk yet
        return record.decode(prior[0], replayed=True, stored_response=prior[1])

    def balance(self, account: str) -> int | None:
        with self._cond:
            self._usable()
            return self._balance(account)

    def top_up(self, account: str, amount: int) -> int:
        with self._cond:
            self._usable()
            have = self._balance(account)
            self._balances[account] = (have or 0) + amount
            self._gen += 1
            entry = _Entry(self._gen, int(time.time()))
            entry.balance = (_TOP_UP_OP, account, amount)
            self._enqueue(entry)
            after = self._balances[account]
        self.wait_durable(entry.gen)
        return after

    def set_opening_balance(self, account: str, amount: int) -> bool:
        """Give `account` its configured opening balance unless it already has one; True if set."""
        with self._cond:
            self._usable()
            if self._balance(account) is not None:
                return False
            self._balances[account] = amount
            self._gen += 1
            entry = _Entry(self._gen, int(time.time()))
            entry.balance = (_OPENING_OP, account, amount)
            self._enqueue(entry)
        self.wait_durable(entry.gen)
        return True

    def peek(self, keys: list[str]) -> dict[str, int]:
        """The value of each exact bucket key (0 when absent); no window sums."""
        out = {}
        with self._cond:
            self._usable()
            self._make_room()
            split = [(k, *k.rpartition(":")[::2]) for k in keys]
            missing = {base for _, base, _ in split if base not in self._values}
            if missing:
                self._load(missing)
            for key, base, bucket in split:
                out[key] = self._values[base].get(int(bucket), 0)
        return out

    def fold_now(self, timeout: float = 10.0) -> bool:
        """Wait until every entry written so far is folded into the SQLite file; False on timeout
        (for tools and tests that read the file directly)."""
        deadline = time.monotonic() + timeout
        self._flush()
        with self._cond:
            target = self._durable
            while self._folded < target and (self._unfolded or self._folding):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake_folder()
                self._cond.wait(min(left, FOLD_RETRY))
            return True

    def close(self) -> None:
        self._flush()  # everything charged gets written
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._fold_cond.notify()
        self._folder.join()  # folds what is left (or leaves it in the journal if it cannot)
        if self._fold_process is not None:
            self._fold_process.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._cond:
            while self._committing:
                self._cond.wait()
            if self._write is not self._read:
                self._write.close()
            self._read.close()
            self._journal.close()
            self._cond.notify_all()
        self._owner.release()
