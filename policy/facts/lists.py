"""Number and segment list indexes, and the API blacklist.

Every list of the policy goes into two lookups, built once per loaded policy:
  numbers:  number key -> Membership   (one dict for all number lists)
  prefixes: prefix     -> Membership   (one dict for all segment lists; prefixes of 3..7 digits)
A recipient costs one dict lookup for its number and one per prefix length that occurs in the
segment lists (at most five), however many lists and entries there are.

A Membership says which lists hold the key and what that means for the scoped facts. Keys held
by the same set of lists share one Membership object, so a million entries cost a million dict
slots and keys, not a million small objects.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import sqlite_utils

from ..rules.model import NumberList
from .numbers import NumberSet, iter_numbers, normalize_number, number_key, open_number_file

SEGMENT_PREFIX_LENGTHS = range(3, 8)
log = logging.getLogger("smspolicy.lists")


@dataclass(frozen=True, slots=True)
class Membership:
    ids: tuple[str, ...]            # ids of the lists holding the key, sorted
    is_global: bool                 # one of them has scope global
    accounts: frozenset[str]        # accounts of the scope-customer lists among them
    channels: frozenset[str]        # channels of the scope-channel lists among them


def _membership(lists: Iterable[NumberList]) -> Membership:
    lists = list(lists)
    return Membership(
        ids=tuple(sorted({lst.id for lst in lists})),
        is_global=any(lst.scope == "global" for lst in lists),
        accounts=frozenset(lst.account for lst in lists if lst.scope == "customer" and lst.account),
        channels=frozenset(lst.channel for lst in lists if lst.scope == "channel" and lst.channel),
    )


def iter_entries(lst: NumberList, source_dir: str | Path = "") -> Iterator[str]:
    """The list's entries, then the lines of its entry files (paths relative to the rules
    folder), streamed."""
    yield from lst.entries
    for name in lst.files:
        path = Path(source_dir) / name
        bad: list[int] = []
        try:
            with open_number_file(path) as f:
                yield from iter_numbers(f, bad)
        except OSError as e:
            raise ValueError(f"list {lst.id}: cannot read entry file {path}: {e.strerror}") from None
        if bad:
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise ValueError(f"list {lst.id}: {path}: line(s) {', '.join(map(str, bad[:5]))}{more} "
                             "hold no number")


def _entry_key(entry: str) -> int | str:
    return number_key(normalize_number(entry)[0])


class ListIndex:
    def __init__(self, lists: Iterable[NumberList], source_dir: str | Path = ""):
        self.numbers: dict[int | str, Membership] = {}
        self.prefixes: dict[str, Membership] = {}
        self.api_entries: dict[str, list[str]] = {}   # scope-api number lists: the API blacklist's seed
        # Membership of the union {old lists} + {one more list}; keys in the same lists share it
        members: dict[tuple[str, ...], Membership] = {}
        by_id: dict[str, NumberList] = {}

        def grow(old: Membership | None, lst: NumberList) -> Membership:
            ids = (lst.id,) if old is None else tuple(sorted({*old.ids, lst.id}))
            m = members.get(ids)
            if m is None:
                m = members[ids] = _membership(by_id[i] for i in ids)
            return m

        for lst in lists:
            by_id[lst.id] = lst
            entries = iter_entries(lst, source_dir)
            if lst.kind == "segments":
                for prefix in entries:
                    if not (prefix.isdigit() and prefix.isascii() and len(prefix) in SEGMENT_PREFIX_LENGTHS):
                        raise ValueError(f"list {lst.id}: segment entry {prefix!r} is not 3 to 7 digits")
                    self.prefixes[prefix] = grow(self.prefixes.get(prefix), lst)
                continue
            if lst.kind != "numbers":
                raise ValueError(f"list {lst.id}: kind must be numbers or segments, not {lst.kind!r}")
            if lst.scope == "api":
                entries = self.api_entries[lst.id] = list(entries)
            keys = map(_entry_key, entries)
            if not self.numbers:  # the first (often the only big) list: all keys share one value
                self.numbers = dict.fromkeys(keys, grow(None, lst))
                continue
            index = self.numbers
            only = grow(None, lst)
            upgraded: dict[Membership, Membership] = {}
            for key in keys:
                old = index.get(key)
                if old is None:
                    index[key] = only
                else:
                    new = upgraded.get(old)
                    if new is None:
                        new = upgraded[old] = grow(old, lst)
                    index[key] = new
        self.prefix_lengths = tuple(sorted({len(p) for p in self.prefixes}))

    def number(self, key: int | str) -> Membership | None:
        return self.numbers.get(key)

    def segment(self, number: str) -> list[Membership]:
        """Memberships of every listed prefix of the number (shortest first)."""
        get = self.prefixes.get
        return [m for m in (get(number[:n]) for n in self.prefix_lengths) if m is not None]


def normalize_numbers(numbers: Iterable[str]) -> list[str]:
    """The numbers in their normalized form; ValueError naming those that are not numbers."""
    out, bad = [], []
    for raw in numbers:
        number, digits = normalize_number(raw)
        (out if digits else bad).append(number)
    if bad:
        raise ValueError(f"not phone numbers: {', '.join(map(repr, bad[:5]))}"
                         + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))
    return out


class Refresher:
    """Calls `refresh` every `interval` seconds in a daemon thread, until stop(); a failure is
    logged once per run of failures (the list read last stays in force meanwhile)."""

    def __init__(self, refresh, interval: float, what: str):
        self._refresh, self._what = refresh, what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), name=f"{what}-refresh",
                                        daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        failing = False
        while not self._stop.wait(interval):
            try:
                self._refresh()
                if failing:
                    log.info("%s: read again", self._what)
                failing = False
            except Exception as e:  # noqa: BLE001 - the store is away for now: retry next round
                if not failing:
                    log.warning("%s: cannot read it (%s); the last list read stays in force", self._what, e)
                failing = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


KEEP_CHANGES = 10_000   # numbers changed last, kept for the daemons on the file that are behind


class ApiBlacklist(NumberSet):
    """Numbers blocked through the admin API; a set in memory, persisted in SQLite.

    Daemons sharing one data folder (shared-mode SQLite counters, one port with reuse_port) share
    the file. Every write decides against the file, not this daemon's set, and records what it
    really changed in `api_blacklist_changes`; with `refresh_seconds`, each daemon checks every
    `refresh_seconds` whether another one committed to the file (`PRAGMA data_version`) and
    applies the changes since the last it saw (the whole list is read again only when it is
    further behind than the KEEP_CHANGES numbers kept: with 10^5 numbers listed, reading them
    took 0.1-0.2 s here, applying a change of one number 0.06-0.24 ms).
    Daemons sharing Redis share one list there instead (policy.facts.redis_api_blacklist).

    Reads (`contains`) take no lock: a set membership test is atomic in CPython. Writes update
    the database first and the set after commit, under one lock, so the set never holds what
    the database does not.

    Scope-api lists of the policy seed it (`seed`): each (list, number) pair is added once, ever,
    so a number an operator removed through the API stays removed when the policy is reloaded,
    while entries newly added to such a list do reach the blacklist.
    """

    def __init__(self, path: str | Path, refresh_seconds: float | None = None):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        self._db = sqlite_utils.Database(conn)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.table("api_blacklist").create({"number": str, "added_at": str, "source": str},
                                               pk="number", if_not_exists=True)
        self._db.table("api_blacklist_seeded").create({"list_id": str, "number": str},
                                                      pk=("list_id", "number"), if_not_exists=True)
        self._db.execute("CREATE TABLE IF NOT EXISTS api_blacklist_changes "
                         "(seq INTEGER PRIMARY KEY AUTOINCREMENT, sign TEXT NOT NULL, number TEXT NOT NULL)")
        self._lock = threading.Lock()
        self._data_version = None
        self._seen: int | None = None   # the last change applied to _keys; None: never read
        self._keys: set[int | str] = set()
        self.refresh()
        self._refresher = Refresher(self.refresh, refresh_seconds, "API blacklist") if refresh_seconds else None

    def refresh(self) -> str:
        """Catch up with what other connections (other daemons on this file) committed: ''
        (nothing), 'changes' (applied one by one) or 'set' (the whole list read)."""
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return ""
            self._data_version = version
            with self._db.atomic():   # one snapshot of the changes and the list
                rows = self._db.execute("SELECT seq, sign, number FROM api_blacklist_changes "
                                        "WHERE seq > ? ORDER BY seq", [self._seen]).fetchall()
                if self._seen is not None and rows and rows[0][0] == self._seen + 1:
                    for _seq, sign, number in rows:
                        (self._keys.add if sign == "+" else self._keys.discard)(number_key(number))
                    self._seen = rows[-1][0]
                    return "changes"
                if self._seen is not None and not rows:
                    return ""   # another table changed (a seeding with nothing new)
                last = self._db.execute("SELECT max(seq) FROM api_blacklist_changes").fetchone()[0] or 0
                self._keys = {number_key(r[0]) for r in self._db.execute("SELECT number FROM api_blacklist")}
                self._seen = last
                return "set"

    def _record(self, sign: str, numbers: list[str]) -> None:
        """In the write's transaction: the numbers it really changed, for the other daemons."""
        if not numbers:
            return
        self._db.conn.executemany("INSERT INTO api_blacklist_changes (sign, number) VALUES (?, ?)",
                                  [(sign, n) for n in numbers])
        self._db.execute("DELETE FROM api_blacklist_changes WHERE seq <= "
                         "(SELECT max(seq) FROM api_blacklist_changes) - ?", [KEEP_CHANGES])

    def _insert(self, numbers: Iterable[str], now: str, source: str) -> list[str]:
        """The numbers of `numbers` the file did not list, now listed (in the caller's transaction)."""
        conn = self._db.conn
        return [n for n in numbers if conn.execute(
            "INSERT OR IGNORE INTO api_blacklist (number, added_at, source) VALUES (?, ?, ?)",
            (n, now, source)).rowcount]

    def add(self, numbers: Iterable[str], source: str = "api") -> int:
        """Adds the numbers (any accepted prefix form); returns how many were new."""
        numbers = sorted(set(normalize_numbers(numbers)))
        now = _utcnow()
        with self._lock:
            with self._db.atomic():
                new = self._insert(numbers, now, source)
                self._record("+", new)
            self._keys.update(number_key(n) for n in numbers)   # listed now, by whoever
            return len(new)

    def remove(self, numbers: Iterable[str]) -> int:
        """Removes the numbers; returns how many were listed."""
        numbers = sorted(set(normalize_numbers(numbers)))
        with self._lock:
            with self._db.atomic():
                conn = self._db.conn
                gone = [n for n in numbers if conn.execute(
                    "DELETE FROM api_blacklist WHERE number = ?", (n,)).rowcount]
                self._record("-", gone)
            self._keys.difference_update(number_key(n) for n in numbers)
            return len(gone)

    def seed(self, entries: dict[str, Iterable[str]]) -> int:
        """Adds list entries not seeded before (list id -> numbers); returns how many were new."""
        now = _utcnow()
        added: list[str] = []
        with self._lock:
            with self._db.atomic():
                conn = self._db.conn
                for list_id, numbers in entries.items():
                    # every reload seeds again: what was seeded is read in one query
                    done = {r[0] for r in conn.execute(
                        "SELECT number FROM api_blacklist_seeded WHERE list_id = ?", (list_id,))}
                    fresh = [n for n in sorted(set(normalize_numbers(numbers))) if n not in done]
                    conn.executemany("INSERT OR IGNORE INTO api_blacklist_seeded (list_id, number) "
                                     "VALUES (?, ?)", [(list_id, n) for n in fresh])
                    added += self._insert(fresh, now, f"list:{list_id}")
                self._record("+", added)
            self._keys.update(number_key(n) for n in added)
        return len(added)

    def close(self) -> None:
        if self._refresher:
            self._refresher.stop()
        with self._lock:
            self._db.conn.close()


def _utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
