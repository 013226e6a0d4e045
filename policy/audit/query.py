"""Find decisions in one or several decision logs, in time order.

Each file answers with an indexed query ordered by ts (account, version and time filters use
the (column, ts) indexes; a number goes through the decision_numbers index); the per-file
streams are merged by time, so the logs of several daemons read as one.
Code and rule filters match whole words of the space-separated `codes`, `rules` and
`shadow_rules` columns; combine them with an indexed filter on big logs.
"""
from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Iterator

from .files import expand, open_readonly
from .schema import JSON_COLUMNS, SELECT_COLUMNS

_COLUMN_NAMES = SELECT_COLUMNS.split(", ")
_JSON_POSITIONS = [i for i, c in enumerate(_COLUMN_NAMES) if c in JSON_COLUMNS]
_TS = _COLUMN_NAMES.index("ts")


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
    where, params = [], []
    if account is not None:
        where.append("account_id = ?")
        params.append(account)
    if number is not None:
        where.append("seq IN (SELECT seq FROM decision_numbers WHERE number = ?)")
        params.append(normalize_number(number))
    if code is not None:
        where.append("instr(' ' || codes || ' ', ?) > 0")
        params.append(f" {code} ")
    if rule is not None:
        if shadow_only:
            where.append("instr(' ' || shadow_rules || ' ', ?) > 0")
            params.append(f" {rule} ")
        else:
            where.append("(instr(' ' || rules || ' ', ?) > 0 OR instr(' ' || shadow_rules || ' ', ?) > 0)")
            params += [f" {rule} "] * 2
    elif shadow_only:
        where.append("shadow_rules != ''")
    if since is not None:
        where.append("ts >= ?")
        params.append(float(since))
    if until is not None:
        where.append("ts < ?")
        params.append(float(until))
    if version is not None:
        # A range keeps the prefix match on the (rules_version, ts) index.
        where.append("rules_version >= ? AND rules_version < ?")
        params += [version, version + "\U0010ffff"]
    sql = f"SELECT {SELECT_COLUMNS} FROM decisions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts, seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    files = expand(paths)
    if not files:
        raise ValueError("no decision log given")
    return _merged(files, sql, params, limit)


def _merged(files: list[str], sql: str, params: list, limit: int | None) -> Iterator[dict]:
    streams = [_rows(path, sql, params) for path in files]
    merged = heapq.merge(*streams, key=lambda row: row[_TS]) if len(streams) > 1 else streams[0]
    for row in itertools.islice(merged, limit):
        yield _decode(row)


def _rows(path: str, sql: str, params: list) -> Iterator[tuple]:
    conn = open_readonly(path)
    try:
        yield from conn.execute(sql, params)
    finally:
        conn.close()


def _decode(row: tuple) -> dict:
    values = list(row)
    for i in _JSON_POSITIONS:
        if values[i] is not None:
            values[i] = json.loads(values[i])
    return dict(zip(_COLUMN_NAMES, values))
