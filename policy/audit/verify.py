"""Check decision logs for tampering and report the first problem of each chain.

Files are grouped by the chain they belong to (meta `chain_id`: one per daemon log, kept across
rotation) and put in chain order by `first_seq`; each file's meta names the file it continues,
so a missing file in the middle shows up. Inside a file the rows are walked in insertion order;
the walk recomputes every hash and classifies the first thing that does not fit:

  edited     a record's contents no longer match its hash, or it was rewritten with a fresh
             hash that its successor does not chain to
  inserted   a record claims a seq the chain already has
  deleted    seqs are missing
  reordered  the expected record exists but is stored later
  chain broken between files   a file continues another file than the one before it

Format /2 files also have their account and number indexes checked against the records they
cover (index_state): an index that hides or invents a record is reported as edited.

A hash chain alone cannot show that records were cut off its newest end; compare the chain head
printed here with the one the daemon published (DecisionLog.last_seq / last_hash).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .files import expand, open_readonly
from .schema import (FORMAT_V2, GENESIS, HASHED_COLUMNS, JSON_COLUMNS, SCALAR_COLUMNS, SELECT_COLUMNS,
                     SELECT_STORED, fact_keys_id, read_meta, row_hash, row_hash_v2)

EDITED, INSERTED, DELETED, REORDERED = "edited", "inserted", "deleted", "reordered"
CHAIN_BROKEN = "chain broken between files"


@dataclass(frozen=True)
class Problem:
    file: str
    seq: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "file"
        return f"{self.file}: {where}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class ChainSummary:
    chain_id: str
    files: list[str]
    first_seq: int
    last_seq: int            # the head as found on disk
    last_hash: str


@dataclass
class VerifyReport:
    ok: bool = True
    records: int = 0                      # records whose hash and link were checked
    files: list[str] = field(default_factory=list)
    chains: list[ChainSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)   # the first problem of each bad chain
    notes: list[str] = field(default_factory=list)

    @property
    def problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None


@dataclass(frozen=True)
class _File:
    path: str
    chain_id: str
    file_id: str
    first_seq: int
    prev_hash: str
    prev_file: str
    prev_file_id: str
    format: str


class _Peekable:
    def __init__(self, iterator):
        self._it = iter(iterator)
        self._next = next(self._it, None)

    def peek(self):
        return self._next

    def pop(self):
        item, self._next = self._next, next(self._it, None)
        return item


def verify(paths: list[str]) -> VerifyReport:
    files = [_describe(p) for p in expand(paths)]
    if not files:
        raise ValueError("no decision log given")
    chains: dict[str, list[_File]] = {}
    for f in files:
        chains.setdefault(f.chain_id, []).append(f)
    report = VerifyReport()
    for chain in chains.values():
        chain.sort(key=lambda f: f.first_seq)
        report.files.extend(f.path for f in chain)
        problem = _verify_chain(chain, report)
        if problem:
            report.problems.append(problem)
    report.ok = not report.problems
    return report


def _describe(path: str) -> _File:
    conn = open_readonly(path)
    try:
        meta = read_meta(conn)
    finally:
        conn.close()
    return _File(path, meta["chain_id"], meta["file_id"], int(meta["first_seq"]), meta["prev_hash"],
                 meta["prev_file"], meta["prev_file_id"], meta["format"])


class _Chain:
    """The walk's position: the next expected seq, the hash it must chain to, and which file
    holds each seq (to blame the right file)."""

    def __init__(self, first: _File):
        self.expect = first.first_seq
        self.prev_hash = first.prev_hash
        self.start = first.first_seq
        self.ranges: list[tuple[int, str]] = []   # (first seq, file) in chain order

    def file_of(self, seq: int) -> str:
        owner = self.ranges[0][1]
        for first, path in self.ranges:
            if seq >= first:
                owner = path
        return owner


def _verify_chain(chain: list[_File], report: VerifyReport) -> Problem | None:
    first = chain[0]
    name = os.path.basename
    if first.prev_file_id:
        report.notes.append(f"chain {first.chain_id[:8]} starts at seq {first.first_seq} in {first.path}: "
                            f"the file before it ({first.prev_file}) was not given")
    elif first.first_seq != 1 or first.prev_hash != GENESIS:
        return Problem(first.path, None, EDITED,
                       "meta says the chain starts in this file, but not at seq 1 from the genesis hash")
    state = _Chain(first)
    problem = None
    for i, f in enumerate(chain):
        if i:
            before = chain[i - 1]
            if f.prev_file_id != before.file_id:
                problem = Problem(f.path, f.first_seq, CHAIN_BROKEN,
                                  f"{name(f.path)} continues {f.prev_file or 'another file'} "
                                  f"(records up to seq {f.first_seq - 1}), but the file before it is "
                                  f"{name(before.path)}, ending at seq {state.expect - 1}: a file is missing")
                break
        state.ranges.append((f.first_seq, f.path))
        problem = _walk_file(f, state, report)
        if problem:
            break
        if i == len(chain) - 1 or chain[i + 1].prev_file_id != f.file_id:
            continue
        nxt = chain[i + 1]
        # A file that is still empty carries the link only in its meta; check it here.
        if nxt.first_seq > state.expect:
            problem = Problem(f.path, state.expect, DELETED, _missing(state.expect, nxt.first_seq))
        elif nxt.first_seq < state.expect:
            problem = Problem(f.path, nxt.first_seq, INSERTED,
                              f"{name(f.path)} has records after seq {nxt.first_seq - 1}, "
                              f"where {name(nxt.path)} takes over")
        elif nxt.prev_hash != state.prev_hash:
            problem = Problem(f.path, state.expect - 1, EDITED,
                              f"record {state.expect - 1} was rewritten: {name(nxt.path)} "
                              "continues from a different hash")
        if problem:
            break
    report.chains.append(ChainSummary(first.chain_id, [f.path for f in chain], state.start,
                                      state.expect - 1, state.prev_hash))
    return problem


def _missing(first: int, after: int) -> str:
    return f"record {first} is missing" if after == first + 1 else f"records {first}-{after - 1} are missing"


_SCALAR_AT = [HASHED_COLUMNS.index(c) for c in SCALAR_COLUMNS]
_JSON_AT = [HASHED_COLUMNS.index(c) for c in JSON_COLUMNS]


def _hash_v1(values) -> str:
    row = dict(zip(HASHED_COLUMNS, values))
    return row_hash(row["prev_hash"], row)


def _hash_v2(values) -> str:
    blobs = [values[i] for i in _JSON_AT]
    # a JSON column rewritten as a number (no longer text) is hashed by its text form, and differs
    blobs = [b if b is None or isinstance(b, bytes) else str(b).encode() for b in blobs]
    return row_hash_v2([values[i] for i in _SCALAR_AT], blobs)


def _walk_file(f: _File, state: _Chain, report: VerifyReport) -> Problem | None:
    conn = open_readonly(f.path)
    v2 = f.format == FORMAT_V2
    hashed = _hash_v2 if v2 else _hash_v1
    try:
        key_ids = None
        if v2:
            key_ids = set()
            for kid, keys in conn.execute("SELECT id, CAST(keys AS BLOB) FROM fact_keys ORDER BY rowid"):
                if keys is None or fact_keys_id(keys) != kid:
                    return Problem(f.path, None, EDITED, f"fact key list {kid} was altered: the records "
                                   "that use it would read other fact names")
                key_ids.add(kid)
        rows = _Peekable(conn.execute(f"SELECT id, {SELECT_STORED if v2 else SELECT_COLUMNS} FROM decisions ORDER BY id"))
        numbers = _Peekable(conn.execute("SELECT seq, number FROM decision_numbers ORDER BY rowid"))
        n_hashed = len(HASHED_COLUMNS)
        while rows.peek() is not None:
            r = rows.pop()
            rid, values, digest = r[0], r[1:1 + n_hashed], r[-1]
            row = dict(zip(HASHED_COLUMNS, values))
            seq, prev = row["seq"], row["prev_hash"]
            if hashed(values) != digest:
                return Problem(f.path, seq, EDITED, "the record's contents do not match its hash")
            e = state.expect
            if seq != e or prev != state.prev_hash:
                return _misfit(conn, f, state, rid, seq, prev, digest, rows.peek())
            if key_ids is not None and not _keys_present(row["facts"], key_ids):
                return Problem(f.path, seq, EDITED, "the record's fact key list is missing from fact_keys")
            indexed = []
            while numbers.peek() is not None and numbers.peek()[0] == seq:
                indexed.append(numbers.pop()[1])
            if indexed != _destinations(row["destinations"]):
                return Problem(f.path, seq, EDITED,
                               "the number index (decision_numbers) does not match the record's destinations")
            state.expect, state.prev_hash = seq + 1, digest
            report.records += 1
        stray = numbers.peek()
        if stray is not None and stray[0] >= state.expect:
            # Index rows outlive records deleted from the end of the file.
            return Problem(f.path, state.expect, DELETED,
                           _missing(state.expect, stray[0] + 1) + " (its number index rows remain)")
        if stray is not None:
            return Problem(f.path, stray[0], INSERTED,
                           f"the number index has a row for seq {stray[0]} ({stray[1]}) that no record holds")
        if v2:
            return _check_indexes(conn, f)
    finally:
        conn.close()
    return None


def _keys_present(stored: bytes | None, key_ids: set[str]) -> bool:
    try:
        facts = json.loads(stored or b"null")
        if not (isinstance(facts, list) and facts and facts[0] == "p"):
            return True
        used = [facts[1][0]] + [r[0] for r in facts[2] if r is not None]
        return all(k in key_ids for k in used)
    except (ValueError, TypeError, IndexError, KeyError):
        return True   # not the packed form: the hash vouches for it as written


def _destinations(stored) -> list | None:
    try:
        return json.loads(stored or "[]")
    except ValueError:
        return None   # matches no index: reported as a mismatch (the hash already caught it)


def _check_indexes(conn, f: _File) -> Problem | None:
    """Format /2: account_index and number_index hold exactly the records up to index_state
    (queries trust them to find, and not to invent, records)."""
    done_id, done_rowid = conn.execute("SELECT decisions_id, numbers_rowid FROM index_state").fetchone()
    checks = (
        ("account index (account_index)",
         "SELECT account_id, ts, seq, id FROM account_index",
         "SELECT account_id, ts, seq, id FROM decisions WHERE id <= ? AND account_id IS NOT NULL", done_id),
        ("number index (number_index)",
         "SELECT number, seq FROM number_index",
         "SELECT number, seq FROM decision_numbers WHERE rowid <= ?", done_rowid),
    )
    for name, index, source, upto in checks:
        extra = conn.execute(f"SELECT min(seq) FROM ({index} EXCEPT {source})", (upto,)).fetchone()[0]
        if extra is not None:
            return Problem(f.path, extra, EDITED, f"the {name} lists seq {extra} where the records do not")
        missing = conn.execute(f"SELECT min(seq) FROM ({source} EXCEPT {index})", (upto,)).fetchone()[0]
        if missing is not None:
            return Problem(f.path, missing, EDITED, f"the {name} is missing seq {missing}")
    return None


def _misfit(conn, f: _File, state: _Chain, rid: int, seq: int, prev: str, digest: str, nxt) -> Problem:
    """Name the first record that does not continue the chain (its own hash is intact)."""
    e = state.expect
    if seq < e:
        return Problem(f.path, seq, INSERTED, f"a second record claims seq {seq}, which the chain already has")
    if seq > e:
        if conn.execute("SELECT 1 FROM decisions WHERE seq = ? AND id > ? LIMIT 1", (e, rid)).fetchone():
            return Problem(f.path, e, REORDERED, f"record {e} is stored after record {seq}")
        return Problem(state.file_of(e), e, DELETED, _missing(e, seq))
    n_seq, n_prev = (nxt[1], nxt[HASHED_COLUMNS.index("prev_hash") + 1]) if nxt else (None, None)
    if n_seq == e and n_prev == state.prev_hash:
        return Problem(f.path, e, INSERTED,
                       f"a record that does not chain claims seq {e}; the next one with seq {e} does")
    if e > state.start and (nxt is None or (n_seq == e + 1 and n_prev == digest)):
        return Problem(state.file_of(e - 1), e - 1, EDITED,
                       f"record {e - 1} was rewritten: record {e} was chained to a different hash")
    return Problem(f.path, e, EDITED, f"record {e} does not chain to the record before it")
