"""The append-only, hash-chained decision log the daemon writes.

`append()` only queues the record (a lock, a deque append); one background thread turns queued
records into rows, chains their hashes and commits them in batches, one transaction per batch.
New files are written in format /2 (schema.py): each JSON value encoded once, by orjson, and
hashed as stored; the account and number indexes filled in bulk every INDEX_EVERY records.
Nothing is dropped silently: when the disk write fails, the batch stays queued and is retried
with backoff while `healthy` is False; when the queue is full, `on_overflow` decides between
waiting ("block") and refusing ("fail_closed", append returns False). Both are counted in
`write_failures` and `overflows` for the daemon's metrics.

One process writes one log (a lock file enforces it); several daemons write several logs, and
the audit tools read them together.
"""
from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

import orjson

from ..sqlite_wal import Checkpointer
from .content import CONTENT_MODES, mask
from .files import open_readonly, rotated_files, rotated_name
from .schema import (COLUMNS, FORMAT, FORMAT_V2, FORMATS, GENESIS, HASHED_COLUMNS,
                     INDEX_EVERY, INPUT_FIELDS, INSERT_DECISION, INSERT_DECISION_V2, INSERT_NUMBER,
                     JSON_COLUMNS, SCALAR_COLUMNS, create_schema, fact_keys_id, fill_indexes, frame,
                     read_fact_keys, read_meta, row_hash)

log = logging.getLogger("policy.audit")

OVERFLOW_POLICIES = ("block", "fail_closed")
SYNC_MODES = ("normal", "full")
_BATCH_MAX = 2000
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 2.0
_ROTATE_RETRY_SECONDS = 1.0
_BUSY_MS = 1000   # only a foreign writer (an operator's tool) can hold the lock; retry, do not hang
# _row_v2 lays its row out by hand, for speed; this is the layout it writes.
_V2_SCALARS = ("seq", "decision_id", "ts", "request_id", "frontend_id", "account_id", "src_id", "content",
               "content_mode", "content_sha256", "msg_fmt", "rules_version", "codes", "rules",
               "shadow_rules", "prev_hash")
_V2_ROW = ("seq", "decision_id", "ts", "request_id", "frontend_id", "account_id", "src_id", "destinations",
           "content", "content_mode", "content_sha256", "msg_fmt", "facts", "counters", "rules_version",
           "matches", "results", "codes", "rules", "shadow_rules", "prev_hash", "hash")
assert _V2_SCALARS == SCALAR_COLUMNS and _V2_ROW == tuple(COLUMNS) and JSON_COLUMNS == (
    "destinations", "facts", "counters", "matches", "results"), "schema columns changed: update _row_v2"


def check_options(path: str, content_mode: str, queue_max: int, on_overflow: str, sync: str,
                  log_format: str) -> str:
    """The absolute path of a log, once its options are known to be valid (ValueError, or
    FileNotFoundError for a missing folder, otherwise)."""
    if log_format not in FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    if sync not in SYNC_MODES:
        raise ValueError(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
    if content_mode not in CONTENT_MODES:
        raise ValueError(f"content_mode must be one of {', '.join(CONTENT_MODES)}, not {content_mode!r}")
    if on_overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"on_overflow must be one of {', '.join(OVERFLOW_POLICIES)}, not {on_overflow!r}")
    if queue_max < 1:
        raise ValueError("queue_max must be at least 1")
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(path)):
        raise FileNotFoundError(f"decision log folder {os.path.dirname(path)!r} does not exist")
    return path


def wait_until(log, done, deadline: float | None, healthy_only: bool = False) -> bool:
    """Wait on log._cond (held by the caller) until done(); False at `deadline` (None: no
    deadline), or with healthy_only as soon as log.healthy is False (wait_durable: the caller
    answers anyway, the records stay queued)."""
    while not done():
        remaining = None if deadline is None else deadline - time.monotonic()
        if (remaining is not None and remaining <= 0) or (healthy_only and not log.healthy):
            return False
        log._cond.wait(remaining)
    return True


def check_record(record: dict) -> None:
    """Refuse (ValueError) a record the writer could not store, on the caller's side: in the
    writer it would block the queue. Sets a missing ts to now."""
    if not INPUT_FIELDS.issuperset(record):
        raise ValueError(f"unknown decision-log fields: {sorted(set(record) - INPUT_FIELDS)}")
    ts = record.get("ts")
    if ts is None:
        record["ts"] = time.time()
    elif type(ts) not in (float, int) or ts != ts:
        raise ValueError(f"decision-log ts must be epoch seconds, not {ts!r}")
    msg_fmt = record.get("msg_fmt")
    if msg_fmt is not None and type(msg_fmt) is not int:
        raise ValueError(f"decision-log msg_fmt must be an int, not {msg_fmt!r}")


@dataclass(frozen=True)
class _ChainEnd:
    """Where the chain stands: the last committed record and the file that holds it."""
    seq: int
    hash: str
    chain_id: str
    file_id: str
    file_name: str


class LogLockedError(RuntimeError):
    pass


class SlotReservations:
    """has_room / reserve / release over a log's bounded queue (`pending`, `queue_max`), for
    both writers (this module's thread, policy.audit.log_process's child process)."""

    def has_room(self) -> bool:
        """Whether a decision made now could be logged (reserve() takes the slot)."""
        if self.on_overflow != "fail_closed":
            return True
        return self.healthy and self.pending + self._reserved < self.queue_max

    def reserve(self) -> bool:
        """Take a queue slot for a decision about to be made, before anything is counted or
        debited for it: with fail_closed, a slot found free by has_room() could go to another
        thread before append(), and the decision would be refused after its charge. False: no
        room (the caller refuses the decision). Give the slot to append(record, reserved=True),
        or back with release(). With "block" append() waits for room instead: always True."""
        if self.on_overflow != "fail_closed":
            return True
        with self._cond:
            if not (self.healthy and self.pending + self._reserved < self.queue_max):
                return False
            self._reserved += 1
            return True

    def release(self) -> None:
        """Give back a slot reserve() took, for a decision that will not be appended."""
        if self.on_overflow == "fail_closed":
            with self._cond:
                self._reserved -= 1

    def _check(self, record: dict, reserved: bool) -> None:
        """check_record, giving a reserved slot back when the record is refused."""
        try:
            check_record(record)
        except BaseException:
            if reserved:
                self.release()
            raise


class DecisionLog(SlotReservations):
    def __init__(self, path: str, content_mode: str = "full", rotate_bytes: int | None = None,
                 rotate_seconds: int | None = None, queue_max: int = 10000,
                 on_overflow: str = "block", flush_interval: float = 0.05,
                 keep_rotated: int | None = None, sync: str = "full", log_format: str = FORMAT):
        self.path = check_options(path, content_mode, queue_max, on_overflow, sync, log_format)
        self.content_mode = content_mode
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.queue_max = queue_max
        self.on_overflow = on_overflow
        self.flush_interval = flush_interval
        self.keep_rotated = keep_rotated
        self.sync = sync
        self.log_format = log_format   # of the files this log creates; an existing file keeps its own

        # Counters and state the daemon exports (metrics, health).
        self.write_failures = 0
        self.overflows = 0
        self.healthy = True
        self.last_error: str | None = None

        self._lock_file = _lock(self.path)
        self._queue: deque[dict] = deque()
        self._pending = 0            # queued + taken by the writer but not yet committed
        self._reserved = 0           # slots reserve()d for decisions being made (fail_closed)
        # Records leave the queue in order, so "the first `_committed` appended are durable":
        # wait_durable() compares a caller's mark() with it.
        self._appended = 0
        self._committed = 0
        self._cond = threading.Condition()
        self._closing = False
        self._close_deadline: float | None = None
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None
        self._identity: tuple[int, int] | None = None
        self._end: _ChainEnd | None = None
        self._file_first_seq = 1
        self._file_created = 0.0
        self._page_size = 4096
        self._format = log_format      # of the open file
        self._unindexed = 0            # /2: records of the open file not yet in its indexes
        self._key_ids: dict[tuple, str] = {}        # /2: key lists the open file holds -> id
        self._batch_keys: dict[tuple, tuple[str, bytes]] = {}   # /2: new in the batch being written
        self._next_rotate_try = 0.0
        try:
            self._open()
        except (sqlite3.OperationalError, OSError) as exc:
            # Locked, read-only, out of space: the writer keeps retrying and `healthy` says so.
            # Anything else (not a database, not a decision log) is a configuration error.
            self._failed(exc)
        except BaseException:
            os.close(self._lock_file)
            raise
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._thread.start()

    # ---- caller side -------------------------------------------------------------------

    def append(self, record: dict, reserved: bool = False) -> bool:
        """Queue one decision; the log takes ownership of `record` (do not mutate it after).

        Returns False only with on_overflow="fail_closed" when the queue is full: the caller
        must then refuse the decision, since it cannot be logged. `reserved`: the slot was
        taken by reserve() before the decision was made, so there is room.
        """
        self._check(record, reserved)
        with self._cond:
            held = reserved and self.on_overflow == "fail_closed"
            if held:   # the slot becomes the record's
                self._reserved -= 1
            if self._closing:
                raise RuntimeError("decision log is closed")
            if not held and self._pending + self._reserved >= self.queue_max:
                self.overflows += 1
                if self.on_overflow == "fail_closed":
                    return False
                while self._pending >= self.queue_max:
                    self._cond.wait()
                    if self._closing:
                        raise RuntimeError("decision log closed while waiting for queue space")
            self._queue.append(record)
            self._pending += 1
            self._appended += 1
        return True

    def mark(self) -> int:
        """Read right after append(): a mark that covers the record just appended."""
        return self._appended

    def wait_durable(self, mark: int, timeout: float) -> bool:
        """Wait until every record up to `mark` is committed: a decision must not be answered
        before its record would survive a kill -9 (the customer acts on the answer, an auditor
        must find it). False on timeout or while the log cannot be written (`healthy` False):
        the caller then answers anyway, since the records stay queued and are retried."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._committed >= mark:
                return True
            if not self.healthy:
                return False
            self._cond.notify_all()   # the writer commits now rather than at its next tick
            return wait_until(self, lambda: self._committed >= mark, deadline, healthy_only=True)

    def state(self) -> tuple[int, bool, str | None, int]:
        """(records committed, healthy, last error, write failures): what a writer process
        reports to its daemon (policy.audit.log_process)."""
        return (self._committed, self.healthy, self.last_error, self.write_failures)

    def wait_state(self, seen: tuple | None, timeout: float) -> tuple[int, bool, str | None, int]:
        """state() once it differs from `seen`, or after `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: self.state() != seen, timeout)
            return self.state()

    @property
    def pending(self) -> int:
        """Decisions accepted by append() and not yet durable."""
        return self._pending

    @property
    def last_seq(self) -> int:
        return self._end.seq if self._end else 0

    @property
    def last_hash(self) -> str:
        """The chain head; publishing it elsewhere (logs) makes truncation of the tail evident."""
        return self._end.hash if self._end else GENESIS

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record appended so far is committed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()   # wake the writer now rather than at its next tick
            return wait_until(self, lambda: not self._pending, deadline)

    def close(self, timeout: float = 30.0) -> bool:
        """Write what is queued (retrying up to `timeout`) and stop; False if records remain."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join()
        if self._lock_file is not None:
            if self._pending:
                log.error("decision log %s closed with %d decisions not written: %s",
                          self.path, self._pending, self.last_error)
            os.close(self._lock_file)
            self._lock_file = None
        return not self._pending

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        batch: list[dict] = []
        backoff = _BACKOFF_MIN
        while True:
            with self._cond:
                if not batch:
                    if not self._queue and not self._closing:
                        self._cond.wait(self.flush_interval)
                    if not self._queue and self._closing:
                        break
                    while self._queue and len(batch) < _BATCH_MAX:
                        batch.append(self._queue.popleft())
                elif self._closing and time.monotonic() >= self._close_deadline:
                    break
            try:
                if batch:
                    self._write(batch)
                    with self._cond:
                        self._pending -= len(batch)
                        self._committed += len(batch)
                        if not self.healthy:
                            log.warning("decision log %s is writable again", self.path)
                            self.healthy = True
                        self._cond.notify_all()
                    batch = []
                    backoff = _BACKOFF_MIN
                self._maybe_index()
                self._maybe_rotate()
            except Exception as exc:   # whatever it is, keep the records and keep trying
                if not isinstance(exc, (sqlite3.Error, OSError)):
                    log.exception("decision log writer error")
                self._failed(exc)
                with self._cond:
                    self._cond.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
        self._close_conn()
        # Records the writer still holds stay counted in `pending`; close() reports them.
        with self._cond:
            self._queue.extendleft(reversed(batch))
            self._cond.notify_all()

    def _failed(self, exc: BaseException) -> None:
        self.write_failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.healthy:
            log.error("decision log %s cannot be written (%s); %d decisions kept in memory, retrying",
                      self.path, self.last_error, self._pending)
        self.healthy = False
        try:
            self._close_conn()
        except sqlite3.Error:
            pass

    def _stop_checkpointer(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def _close_conn(self) -> None:
        """Close the active file's connection, its checkpointer first (the last connection to
        close folds the WAL into the file)."""
        self._stop_checkpointer()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _write(self, batch: list[dict]) -> None:
        if self._conn is not None and self._identity != _identity(self.path):
            log.warning("decision log %s was moved or deleted; starting a new file", self.path)
            self._close_conn()
        if self._conn is None:
            self._open()
        end = self._end
        seq, prev = end.seq, end.hash
        rows, numbers = [], []
        v2 = self._format == FORMAT_V2
        self._batch_keys = {}
        make_row = self._row_v2 if v2 else self._row
        for record in batch:
            seq += 1
            row, destinations = make_row(record, seq, prev)
            prev = row[-1]
            rows.append(row)
            numbers.extend((seq, number) for number in destinations)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self._batch_keys:
                conn.executemany("INSERT OR IGNORE INTO fact_keys (id, keys) VALUES (?, CAST(? AS TEXT))",
                                 self._batch_keys.values())
            conn.executemany(INSERT_DECISION_V2 if v2 else INSERT_DECISION, rows)
            conn.executemany(INSERT_NUMBER, numbers)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._end = _ChainEnd(seq, prev, end.chain_id, end.file_id, end.file_name)
        if v2:
            self._unindexed += len(batch)
            for keys, (kid, _blob) in self._batch_keys.items():
                self._key_ids[keys] = kid
            self._batch_keys = {}

    def _packed(self, facts) -> list:
        """Format /2's facts column: the pipeline's facts as key-list ids and value lists
        (schema.unpack_facts undoes it), anything else as ["j", facts]."""
        if type(facts) is dict and len(facts) == 2:
            message, recipients = facts.get("message"), facts.get("recipients")
            if type(message) is dict and type(recipients) is list:
                known = self._key_ids.get
                mid = known(tuple(message)) or self._keys_id(message)
                if mid is not None:
                    packed = []
                    for r in recipients:
                        if r is None:
                            packed.append(None)
                            continue
                        rid = (known(tuple(r)) or self._keys_id(r)) if type(r) is dict else None
                        if rid is None:
                            break
                        packed.append([rid, list(r.values())])
                    else:
                        return ["p", [mid, list(message.values())], packed]
        return ["j", facts]

    def _keys_id(self, d: dict) -> str | None:
        keys = tuple(d)
        kid = self._key_ids.get(keys)
        if kid is not None:
            return kid
        new = self._batch_keys.get(keys)
        if new is not None:
            return new[0]
        if not all(type(k) is str for k in keys):
            return None   # JSON would turn them into strings: stored as is instead
        try:
            blob = orjson.dumps(keys)
        except TypeError:
            return None   # a lone surrogate in a key name
        kid = fact_keys_id(blob)
        self._batch_keys[keys] = (kid, blob)
        return kid

    def _content(self, record: dict) -> tuple[str | None, str | None]:
        """(content as stored by content_mode, SHA-256 of the full text), both None without one."""
        content = record.get("content")
        if content is None:
            return None, None
        # undecodable payloads are kept as hex text
        content = content.hex() if isinstance(content, bytes) else str(content)
        content_sha = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
        mode = self.content_mode
        return (content_sha if mode == "hashed" else content if mode == "full" else mask(content)), content_sha

    def _row_v2(self, record: dict, seq: int, prev_hash: str) -> tuple[tuple, list[str]]:
        """Format /2: the row in COLUMNS order, JSON columns as the bytes that are stored and
        hashed (nothing is encoded twice)."""
        stored, content_sha = self._content(record)
        get = record.get
        destinations = [str(d) for d in get("destinations") or ()]
        results = get("results") or {}
        matches = get("matches") or []
        recipients = results.get("recipients") or ()
        codes = _words([results.get("submit_result")] + [r.get("code") for r in recipients])
        rules = _words([results.get("submit_rule_id")] + [r.get("rule_id") for r in recipients])
        shadow = _words([m.get("rule_id") for m in matches if m.get("mode") == "shadow"]) if matches else ""
        msg_fmt = get("msg_fmt")
        if not get("decision_id"):
            record["decision_id"] = uuid.uuid4().hex  # kept in the record so a retry reuses it
        scalars = [seq, str(record["decision_id"]), float(record["ts"]), _text(get("request_id")),
                   _text(get("frontend_id")), _text(get("account_id")), _text(get("src_id")),
                   stored, self.content_mode, content_sha, None if msg_fmt is None else int(msg_fmt),
                   _text(get("rules_version")), codes, rules, shadow, prev_hash]
        blobs = [_json_bytes(destinations), _json_bytes(self._packed(get("facts"))), _json_bytes(get("counters")),
                 _json_bytes(matches), _json_bytes(results)]
        try:
            head = frame(scalars, blobs)
        except UnicodeEncodeError:
            # Lone surrogates (a malformed UCS-2 payload) cannot be stored as UTF-8 text.
            scalars = [_scrub(v) for v in scalars]
            head = frame(scalars, blobs)
        h = hashlib.sha256(head)
        for b in blobs:
            h.update(b)
        (seq_, did, ts, rid, fid, aid, src, content_, mode_, sha, fmt, version, codes_, rules_, shadow_,
         prev) = scalars
        d, f, c, m, r = blobs
        return ((seq_, did, ts, rid, fid, aid, src, d, content_, mode_, sha, fmt, f, c, version, m, r,
                 codes_, rules_, shadow_, prev, h.hexdigest()), destinations)

    def _row(self, record: dict, seq: int, prev_hash: str) -> tuple[tuple, list[str]]:
        stored, content_sha = self._content(record)
        destinations = [str(d) for d in record.get("destinations") or ()]
        results = record.get("results") or {}
        matches = record.get("matches") or []
        recipients = results.get("recipients") or ()
        codes = _unique([results.get("submit_result")] + [r.get("code") for r in recipients])
        rules = _unique([results.get("submit_rule_id")] + [r.get("rule_id") for r in recipients])
        shadow = _unique([m.get("rule_id") for m in matches if m.get("mode") == "shadow"])
        msg_fmt = record.get("msg_fmt")
        if not record.get("decision_id"):
            record["decision_id"] = uuid.uuid4().hex  # kept in the record so a retry reuses it
        values = {
            "seq": seq,
            "decision_id": str(record["decision_id"]),
            "ts": float(record["ts"]),
            "request_id": _text(record.get("request_id")),
            "frontend_id": _text(record.get("frontend_id")),
            "account_id": _text(record.get("account_id")),
            "src_id": _text(record.get("src_id")),
            "destinations": _json(destinations),
            "content": stored,
            "content_mode": self.content_mode,
            "content_sha256": content_sha,
            "msg_fmt": None if msg_fmt is None else int(msg_fmt),
            "facts": _json(record.get("facts")),
            "counters": _json(record.get("counters")),
            "rules_version": _text(record.get("rules_version")),
            "matches": _json(matches),
            "results": _json(results),
            "codes": " ".join(codes),
            "rules": " ".join(rules),
            "shadow_rules": " ".join(shadow),
            "prev_hash": prev_hash,
        }
        try:
            digest = row_hash(prev_hash, values)
        except UnicodeEncodeError:
            # Lone surrogates (a malformed UCS-2 payload) cannot be stored as UTF-8 text.
            values = {k: _scrub(v) for k, v in values.items()}
            digest = row_hash(prev_hash, values)
        return tuple(values[c] for c in HASHED_COLUMNS) + (digest,), destinations

    # ---- files and rotation ------------------------------------------------------------

    def _open(self) -> None:
        """(Re)open the active file, creating it chained to its predecessor if needed."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "decisions" not in tables:
                if tables:
                    raise ValueError(f"{self.path} is an SQLite file but not a decision log")
                # Rows are 1-3 KB; big pages keep one insert from splitting a page every time.
                conn.execute("PRAGMA page_size=16384")
                self._create(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: flush() and wait_durable() mean on disk (an fsync each commit). NORMAL: in the
            # WAL, which a kill -9 of the daemon cannot undo; a power loss may drop the last commits
            # (never corrupt the chain) - the counter and gateway stores promise no more than that.
            conn.execute(f"PRAGMA synchronous={self.sync.upper()}")
            meta = read_meta(conn)
            if meta.get("format") not in FORMATS:
                raise ValueError(f"{self.path}: meta says format {meta.get('format')!r}, "
                                 f"expected one of {', '.join(FORMATS)}")
            tail = conn.execute("SELECT seq, hash FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
            first_seq = int(meta["first_seq"])
            seq, digest = tail if tail else (first_seq - 1, meta["prev_hash"])
            end = _ChainEnd(seq, digest, meta["chain_id"], meta["file_id"], os.path.basename(self.path))
            if self._end is not None and end.seq < self._end.seq:
                # The file was replaced by an older copy: keep chaining from what we committed,
                # so verify shows the gap instead of a silently forked chain.
                log.warning("decision log %s ends at seq %d but seq %d was committed; continuing from %d",
                            self.path, end.seq, self._end.seq, self._end.seq)
                end = _ChainEnd(self._end.seq, self._end.hash, end.chain_id, end.file_id, end.file_name)
            self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            unindexed, key_ids = 0, {}
            if meta["format"] == FORMAT_V2:
                done = conn.execute("SELECT decisions_id FROM index_state").fetchone()[0]
                unindexed = conn.execute("SELECT count(*) FROM decisions WHERE id > ?", (done,)).fetchone()[0]
                key_ids = {tuple(keys): kid for kid, keys in read_fact_keys(conn).items()}
            # Checkpoints off the writer's path (policy.sqlite_wal): a commit that checkpoints
            # waits out an fsync of the file, and every answer waiting for that commit with it.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            checkpointer = Checkpointer(self.path)
        except BaseException:
            conn.close()
            raise
        self._checkpointer = checkpointer
        self._conn = conn
        self._format = meta["format"]
        self._unindexed = unindexed
        self._key_ids = key_ids
        self._end = end
        self._file_first_seq = first_seq
        self._file_created = float(meta["created_ts"])
        self._identity = _identity(self.path)

    def _create(self, conn: sqlite3.Connection) -> None:
        prev = self._end or _last_rotated(self.path)
        meta = {
            "format": self.log_format,
            "chain_id": prev.chain_id if prev else uuid.uuid4().hex,
            "file_id": uuid.uuid4().hex,
            "created_ts": repr(time.time()),
            "first_seq": str(prev.seq + 1 if prev else 1),
            "prev_hash": prev.hash if prev else GENESIS,
            "prev_file": prev.file_name if prev else "",
            "prev_file_id": prev.file_id if prev else "",
        }
        conn.execute("BEGIN IMMEDIATE")
        try:
            create_schema(conn, meta)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _maybe_index(self, force: bool = False) -> None:
        """Format /2: fill the account and number indexes once INDEX_EVERY records wait (one
        transaction, each index page written once, instead of a random page per record)."""
        if self._conn is None or self._format != FORMAT_V2 or not self._unindexed:
            return
        if not force and self._unindexed < INDEX_EVERY:
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            fill_indexes(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._unindexed = 0

    def _maybe_rotate(self) -> None:
        if self._conn is None or self._end.seq < self._file_first_seq:
            return  # nothing written to this file yet
        if self.rotate_bytes is None and self.rotate_seconds is None:
            return
        now = time.monotonic()
        if now < self._next_rotate_try:
            return
        too_big = (self.rotate_bytes is not None and
                   self._conn.execute("PRAGMA page_count").fetchone()[0] * self._page_size >= self.rotate_bytes)
        too_old = self.rotate_seconds is not None and time.time() - self._file_created >= self.rotate_seconds
        if too_big or too_old:
            self._rotate(now)

    def _rotate(self, now: float) -> None:
        self._maybe_index(force=True)   # a rotated file is complete: its readers scan no tail
        conn = self._conn
        # A renamed file must not leave its -wal/-shm behind under the active name, so the file
        # leaves WAL mode first; that needs every reader gone (the checkpointer's connection
        # too), else we try again a little later.
        self._stop_checkpointer()
        conn.execute("PRAGMA busy_timeout=100")
        try:
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError:
            mode = "wal"
        if mode != "delete":
            conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            self._checkpointer = Checkpointer(self.path)
            if not self._next_rotate_try:
                log.info("decision log %s: rotation deferred while a reader has the file open", self.path)
            self._next_rotate_try = now + _ROTATE_RETRY_SECONDS
            return
        self._next_rotate_try = 0.0
        self._close_conn()
        target = rotated_name(self.path, self._file_first_seq, self._end.seq)
        if os.path.exists(target):
            raise FileExistsError(f"cannot rotate decision log: {target} already exists")
        os.rename(self.path, target)
        _fsync_dir(self.path)
        self._end = _ChainEnd(self._end.seq, self._end.hash, self._end.chain_id, self._end.file_id,
                              os.path.basename(target))
        log.info("decision log rotated to %s", target)
        self._open()
        if self.keep_rotated is not None:
            for old in rotated_files(self.path)[:-self.keep_rotated or None]:
                os.remove(old.path)
                log.info("decision log retention removed %s", old.path)


def _last_rotated(path: str) -> _ChainEnd | None:
    """The end of the newest rotated file, when the active file is missing (after a crash
    between rotation and the new file, or after an operator removed it)."""
    files = rotated_files(path)
    if not files:
        return None
    newest = files[-1].path
    conn = open_readonly(newest)
    try:
        meta = read_meta(conn)
        tail = conn.execute("SELECT seq, hash FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    seq, digest = tail if tail else (int(meta["first_seq"]) - 1, meta["prev_hash"])
    return _ChainEnd(seq, digest, meta["chain_id"], meta["file_id"], os.path.basename(newest))


def _lock(path: str) -> int:
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LogLockedError(f"decision log {path} is already being written by another process "
                             "(each daemon needs its own log file)") from None
    return fd


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unique(values) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values if v is not None and v != ""))


def _words(values) -> str:
    """" ".join(_unique(values)), for the few values of one record."""
    seen: list[str] = []
    for v in values:
        if v is not None and v != "":
            v = str(v)
            if v not in seen:
                seen.append(v)
    return " ".join(seen)


def _text(value) -> str | None:
    return None if value is None else str(value)


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def _json(value) -> str:
    try:
        return _ENCODER.encode(value)
    except ValueError as exc:   # circular structure: keep what can be kept, never block the log
        log.error("decision-log value cannot be encoded as JSON (%s); storing its repr", exc)
        return json.dumps({"unencodable": repr(value)}, ensure_ascii=False)


def _json_bytes(value) -> bytes:
    """The stored (and hashed) UTF-8 JSON of a value: orjson, compact like _ENCODER. What
    orjson refuses (lone surrogates, non-str keys, ints past 64 bits, cycles) goes through
    _json, scrubbed to valid UTF-8."""
    try:
        return orjson.dumps(value, default=_jsonable)
    except TypeError:   # orjson.JSONEncodeError is a TypeError
        text = _json(value)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return _scrub(text).encode("utf-8")


def _scrub(value):
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value
