"""Folds of the exclusive SQLite counter store in a child process.

The store's folder thread applied the journal's entries to the tables: about 30 µs of Python
per entry under the daemon's GIL, and 40 more of SQLite work on its CPU (measured in process, the
reference workload). The entries are in the journal file already, written before any answer went
out. So here the folder thread only names a stretch of the journal, and a child process
(`python -m policy.counters.fold_process`) reads it and folds it. The SQL is the same
(sqlite_exclusive._Folder), on its own connection to the same file. The daemon holds the file's
owner lock, and the child is its agent.

A fold that fails in the child (file locked, disk full) comes back as the same error the
thread would raise; the entries stay in the journal and in memory and the folder tries again. If
the child dies, the fold fails and the next attempt starts another child. If a child dies after
its COMMIT, before its answer, the daemon finds that in the file (what it records) and does not
ask for it again. Each fold checks, in its transaction, that its stretch starts where the file
says the journal is folded to (_Folder.fold's basis): a child orphaned by a daemon killed -9 that
is still folding while a new owner replays the journal cannot count a stretch twice.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading

from ..frames import helper_env, read_frame, write_frame
from .model import CounterStoreError, StaleFold


class FoldProcess:
    def __init__(self, path: str, busy_timeout_ms: int, sweep_every: int, sweep_batch: int):
        self._args = json.dumps({"path": path, "busy_timeout_ms": busy_timeout_ms,
                                 "sweep_every": sweep_every, "sweep_batch": sweep_batch})
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def fold(self, journal: str, start: int, end: int, count: int, epoch: int, position: int,
             basis: tuple[int, int]) -> None:
        """Fold the `count` entries of journal[start:end] and record (epoch, position), in one
        transaction, if the file records `basis`; raise what went wrong, nothing applied."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                proc = self._proc = subprocess.Popen(
                    [sys.executable, "-m", "policy.counters.fold_process", self._args],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=helper_env())
            try:
                write_frame(proc.stdin.fileno(), (journal, start, end, count, epoch, position, list(basis)))
                answer = read_frame(proc.stdout.fileno())
            except (OSError, EOFError, ValueError):
                answer = None
            if answer is None:
                self._stop(proc)
                raise CounterStoreError(f"the counter fold process exited (status {proc.returncode})")
            if answer != "ok":
                kind, message = answer
                raise {"OperationalError": sqlite3.OperationalError,
                       "StaleFold": StaleFold}.get(kind, CounterStoreError)(message)

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._stop(self._proc)
                self._proc = None

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        try:
            proc.stdin.close()   # the child's end of file: it exits
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def fold_main(argv: list[str]) -> int:
    # the daemon decides when folds stop: it closes the pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from .sqlite_exclusive import PAGE_SIZE, _Folder, read_journal_range
    from .sqlite_store import open_connection
    args = json.loads(argv[0])
    conn = open_connection(args["path"], args["busy_timeout_ms"], PAGE_SIZE, expiry_index=False)
    folder = _Folder(conn, args["sweep_every"], args["sweep_batch"])
    rd, wr = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        job = read_frame(rd)
        if job is None:
            break
        journal, start, end, count, epoch, position, basis = job
        try:
            if folder.recorded() != (epoch, position):
                entries = read_journal_range(journal, start, end)
                if len(entries) != count:
                    raise CounterStoreError(f"{journal}: {count} entries expected between offsets "
                                            f"{start} and {end}, {len(entries)} read")
                folder.fold(entries, epoch, position, tuple(basis))
            answer = "ok"
        except Exception as exc:  # noqa: BLE001 - the daemon's folder reports it and retries
            answer = (type(exc).__name__, str(exc))
        write_frame(wr, answer)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(fold_main(sys.argv[1:]))
