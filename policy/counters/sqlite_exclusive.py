"""SQLite counters owned by one daemon: decisions in memory, a journal committed in groups.

The shared mode (policy.counters.sqlite_store) pays a write transaction per charge: BEGIN
IMMEDIATE, reads, three writes, COMMIT, about 50 page writes, 100+ us, all under the store lock.
When one daemon owns the file (an OS lock enforces it, policy.counters.owner) none of that needs
to be on the decision's path:

* the charge decides from memory: counter buckets are cached per counter (all buckets of one
  base read in one SELECT the first time it is touched; from then on memory is the truth, as
  nobody else writes the file), balances likewise. The walk is the same code as shared mode's
  (policy.counters.walk).
* every charge becomes a journal entry (counter deltas, balance delta, the request record and
  its stored answer), committed together with whatever else queued up (group commit: one
  transaction for many charges under concurrency or for a whole batch) by the first thread
  that needs it durable (see wait_durable: no writer thread).
* an answer is not released before its entry is committed: charge() waits for it by default;
  a caller charging a batch passes wait=False and calls wait_durable() once for the last token.
  So "persistent across restarts" and "no double debit" hold exactly as in shared mode: what a
  client saw is on disk (WAL, synchronous=NORMAL: survives a process crash).
* request ids live in SQLite (24 h of them do not fit in memory); only ids whose entry is not
  committed yet are kept in memory, where charges and recalls look first.

Memory stays bounded: counters whose last change is committed may be dropped from the cache at
any time (they are read again from the file), and the cache is trimmed to `cache_max` counters.

If a group's commit fails, every charge not yet committed fails (CounterStoreError: the caller
answers UNAVAILABLE, the client retries with the same request id) and the caches are dropped,
so the next charge starts again from what the file holds: nothing half-applied is ever trusted.
"""
from __future__ import annotations

import sqlite3
import threading
import time

from . import owner, record
from .model import IDEMPOTENCY_TTL, ChargeResult, CounterStoreError, RecipientCharge
from ..sqlite_wal import Checkpointer
from .sqlite_store import SWEEP_BATCH, SWEEP_EVERY, open_connection
from .walk import Walk, bucket_ranges

CACHE_MAX = 200_000        # counters (bases) kept in memory; committed ones beyond it are dropped
PAGE_SIZE = 4096           # new files only: groups write many rows per commit. Batches of 100 (the
                           # front-end's EvaluateBatch path): median 34 against 46 CPU us per charge
                           # with 1 KB pages; a lone unary caller pays the other way (162 against
                           # 122): bench/counters_micro.py, 3-4 runs each, load average 4-6
LEAD_ROUNDS = 4            # groups one committing thread commits back to back before waking waiters
GROUP_MAX = 1000           # entries queued that make the charging thread commit them at once
BASES_PER_READ = 200       # bases per SELECT when a charge needs counters not in memory

# as shared mode's upsert: expires_at is set when the bucket is created (its window fixes it);
# updating it too would rewrite the expiry index entry of every counter at every commit
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


class _Filter:
    """Which counter bases the file may hold (a Bloom filter: no false "absent").

    Most charges touch counters nobody used yet (per-number limits, new numbers): without this
    each such base cost a SELECT that finds nothing. Built from the file at open (one scan of
    the counters' primary key), every base a charge adds to goes in; rebuilt twice as large
    when it fills, so false "present" answers (a SELECT that finds nothing, as before) stay rare.
    """

    def __init__(self, conn, expected: int = 0):
        self.capacity = max(1 << 16, 2 * expected)
        self.mask = (1 << max(20, (self.capacity * 10).bit_length())) - 1  # >= 10 bits per base
        self.bits = bytearray((self.mask >> 3) + 1)
        self.count = 0
        for (base,) in conn.execute("SELECT DISTINCT base FROM counters"):
            self.add(base)

    def add(self, base: str) -> None:
        h = hash(base)
        step = (h >> 32) | 1
        bits, mask = self.bits, self.mask
        for i in (0, 1, 2):
            p = (h + i * step) & mask
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def __contains__(self, base: str) -> bool:
        h = hash(base)
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
    __slots__ = ("gen", "request", "remember", "counters", "balance_sql", "balance_args", "clock")

    def __init__(self, gen, clock):
        self.gen = gen
        self.clock = clock
        self.request = None        # (id, record, response, expires_at)
        self.remember = None       # (id, response, expires_at)
        self.counters = ()         # [(base, bucket, amount, expires_at)]
        self.balance_sql = None
        self.balance_args = None


class ExclusiveSqliteCounterStore:
    mode = "exclusive"
    recall_in_charge = True   # charge() replays a known id itself; no separate recall needed

    def __init__(self, path: str, *, busy_timeout_ms: int = 5000,
                 idempotency_ttl: int = IDEMPOTENCY_TTL, cache_max: int = CACHE_MAX):
        self.path = path
        self.idempotency_ttl = idempotency_ttl
        self.cache_max = cache_max
        self._owner = owner.hold(path, exclusive=True)
        try:
            # One connection reads (under the store lock) and commits groups (outside it, one
            # committer at a time; SQLite serializes the calls). With a second connection for the
            # writer every commit invalidated the reader's page cache: 105-119 against 164-188
            # CPU us per unary charge, 45-55 against 64-73 in batches of 100 (same run).
            self._read = self._write = open_connection(path, busy_timeout_ms, PAGE_SIZE)
        except BaseException:
            self._owner.release()
            raise
        self._filter = _Filter(self._read)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._values: dict[str, dict[int, int]] = {}   # base -> {bucket: value}
        self._touched: dict[str, int] = {}             # base -> gen of its last change
        self._balances: dict[str, int | None] = {}
        self._pending: dict[str, list] = {}            # request id -> [record, response, gen]
        self._queue: list[_Entry] = []
        self._gen = 0
        self._committed = 0
        self._failed: list[tuple[int, int, str]] = []  # (first gen, last gen, why)
        self._closing = False
        self._committing = False                       # a thread is committing a group right now
        self._since_sweep = 0
        # the WAL is folded into the file off the charge path (policy.sqlite_wal)
        self._checkpointer = Checkpointer(path, busy_timeout_ms / 1000) if path != ":memory:" else None

    # --- charging -------------------------------------------------------------------------

    def charge(self, request_id: str, recipients: list[RecipientCharge], debit_account: str | None,
               price_per_segment: int, now: float, answer=None, wait: bool = True) -> ChargeResult:
        reads = bucket_ranges(recipients)
        clock = int(now)
        with self._cond:
            self._usable()
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
                rebuilt = _Filter(self._read, self._filter.count)
                for base in values:  # among them every base whose first rows are not committed yet
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
                entry.balance_sql, entry.balance_args = _DEBIT, (-debit, debit_account)
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
                if not buckets:  # maybe a new base: it will be on file once committed
                    known.add(base)
                buckets[bucket] = buckets.get(bucket, 0) + amount
                touched[base] = gen
                rows.append((base, bucket, amount, clock + walk.ttls[key]))
            entry.counters = rows
        self._pending[request_id] = [rec, response, entry.gen]
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
        """Drop committed counters, oldest loaded first, until `room` more fit under cache_max."""
        target = max(0, int(self.cache_max * 0.9) - room)
        committed = self._committed
        touched = self._touched
        for base in list(self._values):
            if len(self._values) <= target:
                break
            if touched.get(base, 0) <= committed:
                del self._values[base]
                touched.pop(base, None)

    def _balance(self, account: str) -> int | None:
        if account not in self._balances:
            row = self._read.execute("SELECT balance FROM balances WHERE account = ?", (account,)).fetchone()
            self._balances[account] = None if row is None else row[0]
        return self._balances[account]

    def _known(self, request_id: str, clock: int):
        """(record, response, gen) of a request id charged or remembered before, else None."""
        pending = self._pending.get(request_id)
        if pending is not None:
            rec, response, gen = pending
            if rec is None:  # only an answer remembered since the last commit: the record is on file
                row = self._read.execute("SELECT record FROM requests WHERE id = ?", (request_id,)).fetchone()
                rec = row[0] if row else None
            return (rec or "", response, gen)
        row = self._read.execute(
            "SELECT coalesce(record, ''), response FROM requests WHERE id = ? AND expires_at >= ?",
            (request_id, clock)).fetchone()
        return None if row is None else (row[0], row[1], 0)

    def _usable(self) -> None:
        if self._closing:
            raise CounterStoreError(f"{self.path}: the counter store is closed")

    def _enqueue(self, entry: _Entry) -> None:
        self._queue.append(entry)

    def wait_durable(self, token: int) -> None:
        """Return once the journal entry `token` (ChargeResult.durable) is committed; raise
        CounterStoreError if its group failed to commit (nothing of it was applied).

        Group commit without a writer thread: a waiter finding nobody committing commits
        everything queued itself (the leader); waiters arriving meanwhile wait for the leader,
        and the next of them commits what queued up during that commit, and so on. A writer
        thread was measured first: its hand-offs under the GIL cost a lone caller two thread
        wake-ups per charge (165-188 us CPU per unary charge against a commit's own cost)
        and, running beside a busy request thread, slowed each of that thread's GIL releases.
        """
        if not token or token <= self._committed and not self._failed:
            return
        while True:
            with self._cond:
                while True:
                    for first, last, why in self._failed:
                        if first <= token <= last:
                            raise CounterStoreError(
                                f"{self.path}: the charge could not be committed, nothing applied; "
                                f"retrying with the same request id is safe: {why}")
                    if token <= self._committed:
                        return
                    if not self._committing:
                        break
                    self._cond.wait()
                group = self._take()
            self._commit_group(group)

    def _take(self) -> list:
        """The queued entries, for this thread to commit (call with the lock held)."""
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
        self._commit_group(group)

    def _commit_group(self, group: list) -> None:
        if not group:  # (a failure just dropped the queue)
            with self._cond:
                self._committing = False
                self._cond.notify_all()
            return
        for round_ in range(LEAD_ROUNDS):
            try:
                self._commit(self._write, group)
            except Exception as exc:  # noqa: BLE001 - every waiter of the group learns why
                self._fail(group, exc)
                return
            with self._cond:
                last = group[-1].gen
                self._committed = last
                pending = self._pending
                for e in group:
                    req = e.request or e.remember
                    if req is not None:
                        p = pending.get(req[0])
                        if p is not None and p[2] <= last:
                            del pending[req[0]]
                if self._queue and round_ < LEAD_ROUNDS - 1:
                    # what queued up during this commit (other threads' charges, their callers
                    # now waiting): committed by this thread at once, the waiters woken once
                    # for all, instead of each commit waking every waiter under the GIL
                    group, self._queue = self._queue, []
                    continue
                self._committing = False
                self._cond.notify_all()
                return

    def _commit(self, conn, group: list[_Entry]) -> None:
        requests, remembers, balances = [], [], []
        # one row per counter bucket and group: a batch's messages mostly share the account's
        # and the channel's counters, so a group writes far fewer rows than it has increments
        deltas: dict[tuple[str, int], list[int]] = {}
        for e in group:
            if e.request is not None:
                requests.append(e.request)
            if e.remember is not None:
                remembers.append(e.remember)
            for base, bucket, amount, expires in e.counters:
                d = deltas.get((base, bucket))
                if d is None:
                    deltas[(base, bucket)] = [amount, expires]
                else:
                    d[0] += amount
            if e.balance_sql is not None:
                balances.append((e.balance_sql, e.balance_args))
        counters = [(base, bucket, amount, expires) for (base, bucket), (amount, expires) in deltas.items()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._since_sweep += len(requests) + len(counters)
            if self._since_sweep >= SWEEP_EVERY:
                self._sweep(conn, max(e.clock for e in group))
            if counters:
                conn.executemany(_UPSERT, counters)
            if balances:
                for sql, args in balances:  # in charge order: a top-up before a debit stays before it
                    conn.execute(sql, args)
            if requests:
                conn.executemany(_REQUEST, requests)
            if remembers:
                conn.executemany(_REMEMBER, remembers)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _sweep(self, conn, clock: int) -> None:
        gone = conn.execute("SELECT base, bucket FROM counters WHERE expires_at < ? LIMIT ?",
                            (clock, SWEEP_BATCH)).fetchall()
        conn.executemany("DELETE FROM counters WHERE base = ? AND bucket = ?", gone)
        ids = conn.execute("SELECT id FROM requests WHERE expires_at < ? LIMIT ?",
                           (clock, SWEEP_BATCH)).fetchall()
        conn.executemany("DELETE FROM requests WHERE id = ?", ids)
        self._since_sweep = 0

    def _fail(self, group: list[_Entry], exc: Exception) -> None:
        """The group is lost, and so is everything queued after it (decided on top of it): fail
        them all and forget what memory believed, so the next charge reads the file again."""
        with self._cond:
            lost = self._queue
            self._queue = []
            self._failed.append((group[0].gen, self._gen, str(exc)))
            del self._failed[:-32]
            self._committed = max(self._committed, self._gen)  # nothing older is still in flight
            self._values.clear()
            self._touched.clear()
            self._balances.clear()
            self._pending.clear()
            del lost
            self._committing = False
            self._cond.notify_all()

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
            entry.balance_sql, entry.balance_args = _TOP_UP, (account, amount)
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
            entry.balance_sql, entry.balance_args = _OPENING, (account, amount)
            self._enqueue(entry)
        self.wait_durable(entry.gen)
        return True

    def peek(self, keys: list[str]) -> dict[str, int]:
        """The value of each exact bucket key (0 when absent); no window sums."""
        out = {}
        with self._cond:
            self._usable()
            split = [(k, *k.rpartition(":")[::2]) for k in keys]
            missing = {base for _, base, _ in split if base not in self._values}
            if missing:
                self._load(missing)
            for key, base, bucket in split:
                out[key] = self._values[base].get(int(bucket), 0)
        return out

    def close(self) -> None:
        self._flush()  # everything charged gets committed
        with self._cond:
            if self._closing:
                return
            self._closing = True
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._cond:
            while self._committing:
                self._cond.wait()
            self._read.close()
            self._cond.notify_all()
        self._owner.release()
