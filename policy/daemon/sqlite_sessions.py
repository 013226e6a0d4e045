"""Connection leases in a SQLite file, for daemons sharing one data folder on one machine.

Several daemons may serve one port (reuse_port) on one data folder with the counters in shared
SQLite mode (counters_sqlite_mode: shared). A front-end's Login, RenewSession and EndSession
may each reach a different one, so their leases live in `sessions.db` in that folder, with the
semantics of the in-memory leases (policy.daemon.login.Sessions). Each operation is one
IMMEDIATE transaction: counting an account's live leases and adding one cannot interleave with
another daemon's login. Logins are rare next to messages; one small transaction each is cheap.
"""
from __future__ import annotations

import threading
import uuid

from gateway.sqlitedb import open_shared, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    session_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_account ON leases (account, expires);
"""


class SqliteSessions:
    """policy.daemon.login.Sessions, kept in a SQLite file shared by the daemons on it."""

    def __init__(self, path: str, lease_seconds: int, busy_timeout: float = 5.0):
        self.lease_seconds = lease_seconds
        self._db = open_shared(path, _SCHEMA, busy_timeout, threads=True)
        self._lock = threading.Lock()   # one connection, one transaction at a time

    def _live(self, account_id: str, now: float) -> int:
        self._db.execute("DELETE FROM leases WHERE account = ? AND expires <= ?", (account_id, now))
        return self._db.execute("SELECT count(*) FROM leases WHERE account = ?", (account_id,)).fetchone()[0]

    def _transaction(self, fn):
        with self._lock, transaction(self._db):
            return fn()

    def open(self, account_id: str, limit: int, now: float) -> str | None:
        def run():
            if self._live(account_id, now) >= limit:
                return None
            sid = uuid.uuid4().hex
            self._db.execute("INSERT INTO leases VALUES (?, ?, ?)", (sid, account_id, now + self.lease_seconds))
            return sid
        return self._transaction(run)

    def renew(self, session_id: str, now: float, account_id: str = "", limit: int = 0) -> bool:
        def run():
            row = self._db.execute("SELECT account, expires FROM leases WHERE session_id = ?",
                                   (session_id,)).fetchone()
            if row is not None and row[1] > now:
                self._db.execute("UPDATE leases SET expires = ? WHERE session_id = ?",
                                 (now + self.lease_seconds, session_id))
                return True
            self._db.execute("DELETE FROM leases WHERE session_id = ?", (session_id,))
            if not session_id or not account_id or self._live(account_id, now) >= limit:
                return False
            self._db.execute("INSERT INTO leases VALUES (?, ?, ?)",
                             (session_id, account_id, now + self.lease_seconds))
            return True
        return self._transaction(run)

    def end(self, session_id: str) -> bool:
        return self._transaction(lambda: self._db.execute(
            "DELETE FROM leases WHERE session_id = ?", (session_id,)).rowcount > 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()
