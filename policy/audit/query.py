"""Find decisions in one or several decision logs, in time order.

Each file answers with an indexed query ordered by ts (account, version and time filters use
the (column, ts) indexes; a number goes through the decision_numbers index; format /2 files
keep the account and number indexes apart, filled in bulk, and the records after them are
searched directly); the per-file streams are merged by time, so the logs of several daemons
read as one.
Code and rule filters match whole words of the space-separated `codes`, `rules` and
`shadow_rules` columns; combine them with an indexed filter on big logs.
"""
from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

from .files import expand, open_readonly
from .schema import FORMAT_V2, JSON_COLUMNS, SELECT_COLUMNS, read_fact_keys, read_meta, unpack_facts

_COLUMN_NAMES = SELECT_COLUMNS.split(", ")
_JSON_POSITIONS = [i for i, c in enumerate(_COLUMN_NAMES) if c in JSON_COLUMNS]
_TS = _COLUMN_NAMES.index("ts")
_SEQ = _COLUMN_NAMES.index("seq")


def normalize_number(number: str) -> str:
    """Destinations are logged normalized (no 86 / +86 / 0086 prefix); accept either form."""
    number = number.strip()
    for prefix in ("+86", "0086", "86"):
        if number.startswith(prefix) and len(number) - len(prefix) == 11:
            return number[len(prefix):]
    return number


def query(paths: list[str], account: str | None = None, number: str | None = None,
          code: str | None = None, rule: str | None = None, since: float | None = None,
          until: float | None = None, version: str | None = None, shadow_only: bool = False,
          limit: int | None = None) -> Iterator[dict]:
    """Decoded records matching every given filter, oldest first.

    `since` is inclusive and `until` exclusive (epoch seconds). `version` matches a rules
    version or a prefix of one. `rule` matches deciding rules and matching shadow rules;
    `shadow_only` keeps decisions where at least one shadow rule matched (that rule, with `rule`).
    """
    files = expand(paths)
    if not files:
        raise ValueError("no decision log given")
    f = _Filters(account, None if number is None else normalize_number(number), code, rule,
                 None if since is None else float(since), None if until is None else float(until),
                 version, shadow_only, None if limit is None else int(limit))
    return _merged(files, f)


@dataclass(frozen=True)
class _Filters:
    account: str | None
    number: str | None
    code: str | None
    rule: str | None
    since: float | None
    until: float | None
    version: str | None
    shadow_only: bool
    limit: int | None

    def where(self, t: str = "", account: bool = True, number: str | None = "v1",
              since: bool = True) -> tuple[list[str], list]:
        """SQL conditions on the decisions columns (table alias `t`); `number` says how a
        number is looked up: "v1" (the indexed decision_numbers), "v2" (number_index and the
        unindexed tail) or None (not here)."""
        where, params = [], []
        if account and self.account is not None:
            where.append(f"{t}account_id = ?")
            params.append(self.account)
        if self.number is not None and number == "v1":
            where.append(f"{t}seq IN (SELECT seq FROM decision_numbers WHERE number = ?)")
            params.append(self.number)
        elif self.number is not None and number == "v2":
            where.append(f"{t}seq IN (SELECT seq FROM number_index WHERE number = ? UNION ALL "
                         "SELECT seq FROM decision_numbers WHERE rowid > (SELECT numbers_rowid FROM index_state) "
                         "AND number = ?)")
            params += [self.number] * 2
        if self.code is not None:
            where.append(f"instr(' ' || {t}codes || ' ', ?) > 0")
            params.append(f" {self.code} ")
        if self.rule is not None:
            if self.shadow_only:
                where.append(f"instr(' ' || {t}shadow_rules || ' ', ?) > 0")
                params.append(f" {self.rule} ")
            else:
                where.append(f"(instr(' ' || {t}rules || ' ', ?) > 0 OR instr(' ' || {t}shadow_rules || ' ', ?) > 0)")
                params += [f" {self.rule} "] * 2
        elif self.shadow_only:
            where.append(f"{t}shadow_rules != ''")
        if since and self.since is not None:
            where.append(f"{t}ts >= ?")
            params.append(self.since)
        if since and self.until is not None:
            where.append(f"{t}ts < ?")
            params.append(self.until)
        if self.version is not None:
            # A range keeps the prefix match on the (rules_version, ts) index.
            where.append(f"{t}rules_version >= ? AND {t}rules_version < ?")
            params += [self.version, self.version + "\U0010ffff"]
        return where, params

    def sql(self, select: str, where: list[str], order: str) -> str:
        if where:
            select += " WHERE " + " AND ".join(where)
        select += f" ORDER BY {order}"
        if self.limit is not None:
            select += f" LIMIT {self.limit}"
        return select


def _merged(files: list[str], f: _Filters) -> Iterator[dict]:
    streams = [_file_records(path, f) for path in files]
    merged = heapq.merge(*streams, key=lambda record: record["ts"]) if len(streams) > 1 else streams[0]
    yield from itertools.islice(merged, f.limit)


def _file_records(path: str, f: _Filters) -> Iterator[dict]:
    """One file's matching records, decoded, in (ts, seq) order."""
    conn = open_readonly(path)
    try:
        if read_meta(conn).get("format") != FORMAT_V2:
            where, params = f.where()
            for row in conn.execute(f.sql(f"SELECT {SELECT_COLUMNS} FROM decisions", where, "ts, seq"), params):
                yield _decode(row)
            return
        keys = read_fact_keys(conn)
        for row in _rows_v2(conn, f):
            record = _decode(row)
            try:
                record["facts"] = unpack_facts(record["facts"], keys)
            except (KeyError, TypeError, ValueError, IndexError):
                raise ValueError(f"{path}: seq {record['seq']}: facts cannot be unpacked "
                                 "(its fact_keys are missing or altered; run audit verify)") from None
            yield record
    finally:
        conn.close()


def _rows_v2(conn, f: _Filters) -> Iterator[tuple]:
    """A /2 file's matching rows in (ts, seq) order."""
    if f.account is None:
        where, params = f.where(number="v2")
        yield from conn.execute(f.sql(f"SELECT {SELECT_COLUMNS} FROM decisions", where, "ts, seq"), params)
    else:
        # /2: the account index covers the records up to index_state, in (ts, seq) order;
        # the few after it are searched apart, and the two streams merged.
        where, params = f.where("d.", account=False, number="v2", since=False)
        where = ["a.account_id = ?", "d.id = a.id"] + where
        params = [f.account] + params
        if f.since is not None:
            where.append("a.ts >= ?")
            params.append(f.since)
        if f.until is not None:
            where.append("a.ts < ?")
            params.append(f.until)
        cols = ", ".join(f"d.{c}" for c in _COLUMN_NAMES)
        indexed = conn.execute(f.sql(f"SELECT {cols} FROM account_index a, decisions d", where,
                                     "a.ts, a.seq"), params)
        where, params = f.where(number="v2")
        where.insert(0, "id > (SELECT decisions_id FROM index_state)")
        # `+ts`: sort the tail, do not walk the whole ts index looking for it
        tail = conn.execute(f.sql(f"SELECT {SELECT_COLUMNS} FROM decisions", where, "+ts, seq"), params)
        yield from heapq.merge(indexed, tail, key=lambda row: (row[_TS], row[_SEQ]))


def _decode(row: tuple) -> dict:
    values = list(row)
    for i in _JSON_POSITIONS:
        if values[i] is not None:
            values[i] = json.loads(values[i])
    return dict(zip(_COLUMN_NAMES, values))
