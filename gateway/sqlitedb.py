"""The one way the gateway's processes open and write their shared SQLite files."""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Iterator

from policy.sqlite_wal import CHECKPOINT_SECONDS, Checkpointer  # noqa: F401 - gateway.store uses both from here


def open_shared(path: str, schema: str, busy_timeout: float = 5.0,
                autocheckpoint: bool = True, threads: bool = False) -> sqlite3.Connection:
    """A connection to a file that another process (front-end, forwarder, HTTP API) also writes.

    isolation_level=None: callers issue BEGIN IMMEDIATE themselves (transaction()), so a
    transaction takes the write lock up front instead of failing half-way when the other
    process writes. WAL with synchronous=NORMAL: a commit survives a crash of either process
    (what the no-loss promise needs); only a power cut can lose the last transactions.
    autocheckpoint=False: this connection's commits never checkpoint (a checkpoint fsyncs, for
    milliseconds during which an event loop committing on this connection answers nobody); a
    Checkpointer thread does it instead. threads=True: the connection is used from several
    threads (the caller serializes them with its own lock).
    """
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=not threads)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if not autocheckpoint:
        db.execute("PRAGMA wal_autocheckpoint=0")
    db.executescript(schema)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
