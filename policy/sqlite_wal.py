"""WAL checkpoints off the writers' path, for every SQLite file the product writes (counters,
gateway store): a checkpoint fsyncs, for milliseconds that a charge or an event loop committing
on the same connection would otherwise wait out. Writers open their connections with
`PRAGMA wal_autocheckpoint=0` and leave the checkpoints to a Checkpointer."""
from __future__ import annotations

import sqlite3
import threading

CHECKPOINT_SECONDS = 0.5


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
