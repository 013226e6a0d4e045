"""Every rule set the daemon ever loaded, kept by its content hash so it can be loaded again.

File contents are stored once per distinct content (blobs keyed by sha256), so a thousand
versions that differ in one file cost one copy of everything else. The version id itself is
computed by the rules loader (hash of the normalized files); the store only guarantees that an
id, once stored, always means the same files.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import sqlite3
import tempfile
import time

import sqlite_utils


class VersionConflictError(ValueError):
    pass


class VersionStore:
    def __init__(self, path: str):
        self.path = path
        with self._connect() as conn:
            db = sqlite_utils.Database(conn)
            with db.atomic():
                db["blobs"].create({"sha256": str, "data": bytes}, pk="sha256", if_not_exists=True)
                db["versions"].create({"version_id": str, "first_seen_ts": float},
                                      pk="version_id", if_not_exists=True)
                db["version_files"].create({"version_id": str, "name": str, "sha256": str},
                                           pk=("version_id", "name"), if_not_exists=True)

    def _connect(self) -> _Connection:
        # One short connection per call: the daemon's reload thread and the CLI use the store
        # rarely and from different threads.
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        return _Connection(conn)

    def put(self, version_id: str, files: dict[str, bytes]) -> None:
        """Store a version; storing the same version again is a no-op, storing different files
        under an existing id is refused."""
        if not version_id:
            raise ValueError("version_id is empty")
        entries = {}
        for name, data in files.items():
            entries[_check_name(name)] = (hashlib.sha256(data).hexdigest(), bytes(data))
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            stored = dict(conn.execute("SELECT name, sha256 FROM version_files WHERE version_id = ?",
                                       (version_id,)))
            known = conn.execute("SELECT 1 FROM versions WHERE version_id = ?", (version_id,)).fetchone()
            if known:
                conn.execute("ROLLBACK")
                if stored != {name: sha for name, (sha, _) in entries.items()}:
                    raise VersionConflictError(
                        f"rules version {version_id} is already stored with different files")
                return
            conn.executemany("INSERT OR IGNORE INTO blobs (sha256, data) VALUES (?, ?)",
                             entries.values())
            conn.execute("INSERT INTO versions (version_id, first_seen_ts) VALUES (?, ?)",
                         (version_id, time.time()))
            conn.executemany("INSERT INTO version_files (version_id, name, sha256) VALUES (?, ?, ?)",
                             [(version_id, name, sha) for name, (sha, _) in entries.items()])
            conn.execute("COMMIT")

    def get(self, version_id: str) -> dict[str, bytes]:
        with self._connect() as conn:
            if not conn.execute("SELECT 1 FROM versions WHERE version_id = ?", (version_id,)).fetchone():
                raise KeyError(f"rules version {version_id} is not in {self.path}")
            rows = conn.execute(
                "SELECT f.name, f.sha256, b.data FROM version_files f "
                "LEFT JOIN blobs b ON b.sha256 = f.sha256 WHERE f.version_id = ? ORDER BY f.name",
                (version_id,)).fetchall()
        files = {}
        for name, sha, data in rows:
            if data is None or hashlib.sha256(data).hexdigest() != sha:
                raise ValueError(f"rules version {version_id}: stored content of {name} is damaged")
            files[name] = data
        return files

    def materialize(self, version_id: str, dest_dir: str) -> str:
        """Write the version's files under `dest_dir` (created; must not hold other files, which
        the loader would pick up) and return its absolute path."""
        files = self.get(version_id)
        dest = os.path.abspath(dest_dir)
        if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
            raise FileExistsError(f"{dest} exists and is not an empty folder")
        parent = os.path.dirname(dest)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".materialize-", dir=parent)
        try:
            for name, data in files.items():
                target = os.path.join(staging, *name.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as fh:
                    fh.write(data)
            if os.path.isdir(dest):
                os.rmdir(dest)
            os.rename(staging, dest)   # the folder appears complete or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return dest

    def list(self) -> list[tuple[str, float, int]]:
        """(version_id, first_seen_ts, number of files), oldest first."""
        with self._connect() as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT v.version_id, v.first_seen_ts, count(f.name) FROM versions v "
                "LEFT JOIN version_files f ON f.version_id = v.version_id "
                "GROUP BY v.version_id ORDER BY v.first_seen_ts, v.version_id")]


class _Connection:
    """A sqlite3 connection that `with` closes (sqlite3's own context manager only commits)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.close()


def _check_name(name: str) -> str:
    """Names are relative POSIX paths inside the rules folder; nothing may escape it."""
    norm = posixpath.normpath(name)
    if (not name or "\\" in name or "\x00" in name or norm.startswith(("/", "../")) or norm in (".", "..")
            or norm != name):
        raise ValueError(f"rules file name {name!r} must be a plain relative path like 'lists/vip.txt'")
    return name
