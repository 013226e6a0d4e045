"""The one way the gateway's processes open and write their shared SQLite files."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from typing import Iterator

CHECKPOINT_SECONDS = 0.5


def open_shared(path: str, schema: str, busy_timeout: float = 5.0,
                autocheckpoint: bool = True) -> sqlite3.Connection:
    """A connection to a file that another process (front-end, forwarder, HTTP API) also writes.

    isolation_level=None: callers issue BEGIN IMMEDIATE themselves (transaction()), so a
    transaction takes the write lock up front instead of failing half-way when the other
    process writes. WAL with synchronous=NORMAL: a commit survives a crash of either process
    (what the no-loss promise needs); only a power cut can lose the last transactions.
    autocheckpoint=False: this connection's commits never checkpoint (a checkpoint fsyncs, for
    milliseconds during which an event loop committing on this connection answers nobody); a
    Checkpointer thread does it instead.
    """
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if not autocheckpoint:
        db.execute("PRAGMA wal_autocheckpoint=0")
    db.executescript(schema)
    return db


class Checkpointer:
    """Folds the WAL of `path` into the file every CHECKPOINT_SECONDS, on its own connection in
    a daemon thread (sqlite3 releases the GIL meanwhile). PASSIVE: it never waits for, nor
    blocks, the writers; what it cannot copy now, the next round does."""

    def __init__(self, path: str, busy_timeout: float = 5.0, every: float = CHECKPOINT_SECONDS):
        self._stop = threading.Event()
        self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        self._thread = threading.Thread(target=self._run, args=(every,), name="wal-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        try:
            while not self._stop.wait(every):
                try:
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    continue   # busy or a transient I/O error: the next round tries again
        finally:
            self._db.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
