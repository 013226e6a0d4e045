"""The decision-log file format: tables, indexes, meta keys and the record hash.

One SQLite file holds one stretch of one chain. Every record carries `prev_hash` and a `hash` of
its stored columns, so the writer (decision_log) and the verifier (verify) must agree byte for
byte on what is hashed: both go through this module. Two formats, named in meta `format`:

  /1  hash = sha256(prev_hash + canonical JSON of the record without hash): the JSON columns are
      encoded once to be stored and again, escaped inside the canonical form, to be hashed.
  /2  hash = sha256(frame of the scalar columns + the JSON columns' stored bytes, length-framed):
      what is stored is what is hashed, so each JSON value is encoded once (orjson), and the
      verifier hashes the bytes on disk without re-encoding anything (no dependence on an
      encoder's version). The pipeline's facts ({"message": {...}, "recipients": [{...}, ...]})
      are stored packed: each dict as [id of its key list, [values]], the key lists once per
      file in `fact_keys`, under the sha256 of their JSON (the verifier recomputes it, so a key
      list cannot be changed under the records that use it). Two thirds of a record's bytes
      were those repeated key names, and the writer's cost follows the bytes. Any other facts
      are stored as ["j", facts]. The two random-access indexes (account, number) are not updated per
      record (each insert dirtied a random page: most of the writer's cost on a big file) but
      kept in `account_index` / `number_index`, filled in bulk by the writer every
      INDEX_EVERY records; readers search them plus the few records after `index_state`.

A file keeps the format it was created with; the writer continues an existing /1 file in /1
and starts every new file (rotation) in /2. Readers and the verifier read both.

`id` is the physical insertion order and is deliberately not hashed: the writer always makes it
grow with `seq`, so a row found out of place (moved, re-inserted) shows up as "reordered" or
"inserted" instead of hiding behind a valid hash.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3

import sqlite_utils

FORMAT_V1 = "smspolicy-decision-log/1"
FORMAT_V2 = "smspolicy-decision-log/2"
FORMAT = FORMAT_V2          # what new files are written in
FORMATS = (FORMAT_V1, FORMAT_V2)
# /2: records between two bulk fills of the account and number indexes. A fill writes every
# page of both indexes once (~25 ms at 100,000 records), so fewer, bigger fills cost less per
# record; queries scan at most this many records apart, and a fill delays the next commit.
INDEX_EVERY = 8192
GENESIS = "0" * 64

# What the daemon hands to DecisionLog.append(); everything else is derived by the writer.
INPUT_FIELDS = frozenset({
    "decision_id", "ts", "request_id", "frontend_id", "account_id", "src_id", "destinations",
    "content", "msg_fmt", "facts", "counters", "rules_version", "matches", "results",
})

# Column -> SQLite type, in table order. Structured values are stored as JSON text.
COLUMNS: dict[str, type] = {
    "seq": int,
    "decision_id": str,
    "ts": float,
    "request_id": str,
    "frontend_id": str,
    "account_id": str,
    "src_id": str,
    "destinations": str,      # JSON list of normalized numbers
    "content": str,           # per content_mode
    "content_mode": str,      # full | masked | hashed, hashed so a record says what its content is
    "content_sha256": str,    # of the original text, in every mode
    "msg_fmt": int,
    "facts": str,             # JSON
    "counters": str,          # JSON
    "rules_version": str,
    "matches": str,           # JSON list of {rule_id, code, priority, mode, recipient_index}
    "results": str,           # JSON {submit_result, submit_rule_id, recipients: [...]}
    "codes": str,             # space-separated, every code in results (for filtering)
    "rules": str,             # space-separated deciding rule ids
    "shadow_rules": str,      # space-separated ids of matching shadow rules
    "prev_hash": str,
    "hash": str,
}
HASHED_COLUMNS = tuple(c for c in COLUMNS if c != "hash")
JSON_COLUMNS = ("destinations", "facts", "counters", "matches", "results")
SCALAR_COLUMNS = tuple(c for c in HASHED_COLUMNS if c not in JSON_COLUMNS)
SELECT_COLUMNS = ", ".join(COLUMNS)
# /2 verification hashes the JSON columns' bytes as stored (a TEXT read would decode them).
SELECT_STORED = ", ".join(f"CAST({c} AS BLOB)" if c in JSON_COLUMNS else c for c in COLUMNS)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(row: dict) -> str:
    """The hashed form of a record: sorted keys, no whitespace, UTF-8 as is."""
    return _CANONICAL.encode(row)


def row_hash(prev_hash: str, row: dict) -> str:
    """Format /1. `row` holds HASHED_COLUMNS exactly as stored (JSON columns as their text)."""
    return hashlib.sha256((prev_hash + canonical(row)).encode("utf-8")).hexdigest()


_FRAME = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False,
                          default=lambda v: {"repr": repr(v)})


def _frame_encoder():
    """_FRAME.encode without building its C encoder again on every call (a third of its cost
    for a frame); the same C encoder, so the same text. Falls back to _FRAME.encode."""
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        chunks = make(None, _FRAME.default, json.encoder.encode_basestring, None, ":", ",",
                      False, False, True)

        def encode(value) -> str:
            return "".join(chunks(value, 0))

        sample = [1, 'a"\\中\n\ud800', 1.5, 1e300, float("inf"), None, True, b"x", [3, None]]
        if encode(sample) == _FRAME.encode(sample):
            return encode
    except Exception:  # noqa: BLE001 - no C encoder, or another signature: the public path
        pass
    return _FRAME.encode


_encode_frame = _frame_encoder()


def frame(scalars, blobs) -> bytes:
    """Format /2: what is hashed ahead of the JSON columns' bytes: a JSON array of the scalar
    columns (SCALAR_COLUMNS order) and, last, the list of the JSON columns' byte lengths
    (JSON_COLUMNS order, null for NULL). The standard library's encoder, whose output is fixed
    by the JSON grammar and float repr: a verifier years later computes the same bytes. Raises
    UnicodeEncodeError for a lone surrogate (the writer then scrubs)."""
    return _encode_frame([*scalars, [None if b is None else len(b) for b in blobs]]).encode("utf-8")


def row_hash_v2(scalars, blobs) -> str:
    """Format /2. `scalars` as stored (prev_hash among them), `blobs` the JSON columns' bytes."""
    h = hashlib.sha256(frame(scalars, blobs))
    for b in blobs:
        if b:
            h.update(b)
    return h.hexdigest()


def record_hash(fmt: str, row: dict) -> str:
    """The hash a record with these stored values (JSON columns as text) must carry in a file
    of format `fmt`: what the verifier recomputes."""
    if fmt == FORMAT_V1:
        return row_hash(row["prev_hash"], {c: row[c] for c in HASHED_COLUMNS})
    blobs = [None if row[c] is None else (row[c].encode("utf-8") if isinstance(row[c], str) else row[c])
             for c in JSON_COLUMNS]
    return row_hash_v2([row[c] for c in SCALAR_COLUMNS], blobs)


def create_schema(conn: sqlite3.Connection, meta: dict[str, str]) -> None:
    """Create the tables of a new log file, in meta["format"]; the caller holds the write
    transaction."""
    if meta["format"] == FORMAT_V2:
        _create_v2(conn, meta)
        return
    db, decisions = _create_meta_and_decisions(conn, meta)
    # (column, ts) so that a filter and the time order come from one index.
    decisions.create_index(["ts"], index_name="decisions_ts")
    decisions.create_index(["account_id", "ts"], index_name="decisions_account_ts")
    decisions.create_index(["rules_version", "ts"], index_name="decisions_version_ts")
    decisions.create_index(["seq"], index_name="decisions_seq")  # joins from decision_numbers
    # One row per destination: an exact (or segment-prefix) B-tree lookup. An FTS index would
    # tokenize digits, cost more per insert and still need a join back by seq.
    db["decision_numbers"].create({"seq": int, "number": str}, not_null={"seq", "number"})
    db["decision_numbers"].create_index(["number", "seq"], index_name="decision_numbers_number")


def _create_meta_and_decisions(conn: sqlite3.Connection, meta: dict[str, str]):
    """The tables every format has: meta (filled) and decisions (empty, no index yet)."""
    db = sqlite_utils.Database(conn)
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["meta"].insert_all([{"key": k, "value": v} for k, v in meta.items()])
    db["decisions"].create({"id": int, **COLUMNS}, pk="id",
                           not_null={"seq", "ts", "prev_hash", "hash"})
    return db, db["decisions"]


def _create_v2(conn: sqlite3.Connection, meta: dict[str, str]) -> None:
    db, decisions = _create_meta_and_decisions(conn, meta)
    # Appended in order: these cost a page at the end, not a random one.
    decisions.create_index(["ts"], index_name="decisions_ts")
    decisions.create_index(["rules_version", "ts"], index_name="decisions_version_ts")
    decisions.create_index(["seq"], index_name="decisions_seq")
    # One row per destination, in seq order (verify walks it beside the records).
    db["decision_numbers"].create({"seq": int, "number": str}, not_null={"seq", "number"})
    conn.execute("CREATE TABLE fact_keys (id TEXT PRIMARY KEY, keys TEXT NOT NULL)")
    conn.execute("CREATE TABLE account_index (account_id TEXT NOT NULL, ts FLOAT NOT NULL, "
                 "seq INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (account_id, ts, seq, id)) "
                 "WITHOUT ROWID")
    conn.execute("CREATE TABLE number_index (number TEXT NOT NULL, seq INTEGER NOT NULL, "
                 "PRIMARY KEY (number, seq)) WITHOUT ROWID")
    # How far the two indexes go: decisions.id and decision_numbers.rowid, inclusive.
    conn.execute("CREATE TABLE index_state (decisions_id INTEGER NOT NULL, numbers_rowid INTEGER NOT NULL)")
    conn.execute("INSERT INTO index_state VALUES (0, 0)")


def fact_keys_id(keys_json: bytes) -> str:
    return hashlib.sha256(keys_json).hexdigest()[:32]


def read_fact_keys(conn: sqlite3.Connection) -> dict[str, list]:
    """Format /2: key list id -> key names, as stored (the verifier checks the ids)."""
    return {i: json.loads(k) for i, k in conn.execute("SELECT id, keys FROM fact_keys")}


def unpack_facts(stored, keys: dict[str, list]):
    """Format /2: the facts as the daemon logged them, from the decoded facts column.
    Raises KeyError for a key list the file does not have."""
    if stored is None:
        return None
    tag = stored[0]
    if tag == "j":
        return stored[1]
    _tag, (mid, mvalues), recipients = stored
    return {"message": dict(zip(keys[mid], mvalues)),
            "recipients": [None if r is None else dict(zip(keys[r[0]], r[1])) for r in recipients]}


def fill_indexes(conn: sqlite3.Connection) -> int:
    """Format /2: add the records after index_state to account_index and number_index, in
    key order (each index page written once); the caller holds the write transaction.
    Returns the number of records indexed."""
    done_id, done_rowid = conn.execute("SELECT decisions_id, numbers_rowid FROM index_state").fetchone()
    last_id = conn.execute("SELECT coalesce(max(id), 0) FROM decisions").fetchone()[0]
    last_rowid = conn.execute("SELECT coalesce(max(rowid), 0) FROM decision_numbers").fetchone()[0]
    if last_id <= done_id and last_rowid <= done_rowid:
        return 0
    conn.execute("INSERT INTO account_index (account_id, ts, seq, id) SELECT account_id, ts, seq, id "
                 "FROM decisions WHERE id > ? AND id <= ? AND account_id IS NOT NULL "
                 "ORDER BY account_id, ts, seq, id", (done_id, last_id))
    # OR IGNORE: a message may name one number twice; the index answers "which seqs".
    conn.execute("INSERT OR IGNORE INTO number_index (number, seq) SELECT number, seq "
                 "FROM decision_numbers WHERE rowid > ? AND rowid <= ? ORDER BY number, seq",
                 (done_rowid, last_rowid))
    conn.execute("UPDATE index_state SET decisions_id = ?, numbers_rowid = ?", (last_id, last_rowid))
    return last_id - done_id


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta"))


INSERT_DECISION = (f"INSERT INTO decisions ({SELECT_COLUMNS}) "
                   f"VALUES ({', '.join('?' * len(COLUMNS))})")
# /2: the JSON columns come as the encoder's UTF-8 bytes, stored as the same bytes of TEXT.
INSERT_DECISION_V2 = (f"INSERT INTO decisions ({SELECT_COLUMNS}) VALUES ("
                      + ", ".join("CAST(? AS TEXT)" if c in JSON_COLUMNS else "?" for c in COLUMNS) + ")")
INSERT_NUMBER = "INSERT INTO decision_numbers (seq, number) VALUES (?, ?)"
