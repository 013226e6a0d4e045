"""Who may open a SQLite counter file: one exclusive owner, or any number of shared users.

An exclusive-mode store keeps counters and balances in memory and trusts them: a second process
writing the same file would make that memory wrong, so it would overshoot limits silently. An
OS file lock on `<file>.owner` (flock: released by the kernel when the process dies, so a crashed
daemon never leaves a stale lock) turns that mistake into a clear error at start. Shared-mode
stores take the same lock shared, so the two modes also refuse each other.
"""
from __future__ import annotations

import fcntl
import os
import time


class CounterFileBusy(RuntimeError):
    """Another process holds the counter file in a mode that excludes this one."""


class _Held:
    def __init__(self, fd: int | None, exclusive: bool):
        self._fd = fd
        self._exclusive = exclusive

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._exclusive:
                os.ftruncate(fd, 0)  # the next reader of a failed lock must not see a dead owner
        finally:
            os.close(fd)  # closing drops the flock


def hold(path: str, *, exclusive: bool) -> _Held:
    if path == ":memory:":
        return _Held(None, exclusive)
    lock_path = path + ".owner"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            who = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        finally:
            os.close(fd)
        if who:
            held_by = f"it is owned by {who}"
        else:
            held_by = "other processes have it open in shared mode"
        if exclusive:
            hint = ("counters_sqlite_mode exclusive needs the file to itself; run every daemon "
                    "on this file with counters_sqlite_mode shared, or give this one its own data_dir")
        else:
            hint = ("stop that daemon, or run every daemon on this file with counters_sqlite_mode "
                    "shared")
        raise CounterFileBusy(f"{path}: cannot open the counter store: {held_by} ({lock_path}); "
                              f"{hint}") from None
    if exclusive:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} in exclusive mode since "
                      f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode(), 0)
    return _Held(fd, exclusive)
