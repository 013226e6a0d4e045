"""The decision-log file format: tables, indexes, meta keys and the record hash.

One SQLite file holds one stretch of one chain. Every record carries `prev_hash` and
`hash = sha256(prev_hash + canonical JSON of the record without hash)`, so the writer (decision_log)
and the verifier (verify) must agree byte for byte on what is hashed: both go through `row_hash`.

`id` is the physical insertion order and is deliberately not hashed: the writer always makes it
grow with `seq`, so a row found out of place (moved, re-inserted) shows up as "reordered" or
"inserted" instead of hiding behind a valid hash.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3

import sqlite_utils

FORMAT = "smspolicy-decision-log/1"
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
SELECT_COLUMNS = ", ".join(COLUMNS)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(row: dict) -> str:
    """The hashed form of a record: sorted keys, no whitespace, UTF-8 as is."""
    return _CANONICAL.encode(row)


def row_hash(prev_hash: str, row: dict) -> str:
    """`row` holds HASHED_COLUMNS exactly as stored (JSON columns as their text)."""
    return hashlib.sha256((prev_hash + canonical(row)).encode("utf-8")).hexdigest()


def create_schema(conn: sqlite3.Connection, meta: dict[str, str]) -> None:
    """Create the tables of a new log file; the caller holds the write transaction."""
    db = sqlite_utils.Database(conn)
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["meta"].insert_all([{"key": k, "value": v} for k, v in meta.items()])
    db["decisions"].create({"id": int, **COLUMNS}, pk="id",
                           not_null={"seq", "ts", "prev_hash", "hash"})
    decisions = db["decisions"]
    # (column, ts) so that a filter and the time order come from one index.
    decisions.create_index(["ts"], index_name="decisions_ts")
    decisions.create_index(["account_id", "ts"], index_name="decisions_account_ts")
    decisions.create_index(["rules_version", "ts"], index_name="decisions_version_ts")
    decisions.create_index(["seq"], index_name="decisions_seq")  # joins from decision_numbers
    # One row per destination: an exact (or segment-prefix) B-tree lookup. An FTS index would
    # tokenize digits, cost more per insert and still need a join back by seq.
    db["decision_numbers"].create({"seq": int, "number": str}, not_null={"seq", "number"})
    db["decision_numbers"].create_index(["number", "seq"], index_name="decision_numbers_number")


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta"))


INSERT_DECISION = (f"INSERT INTO decisions ({SELECT_COLUMNS}) "
                   f"VALUES ({', '.join('?' * len(COLUMNS))})")
INSERT_NUMBER = "INSERT INTO decision_numbers (seq, number) VALUES (?, ?)"
