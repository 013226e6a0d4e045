"""The file blacklist: a watched folder of number files, reloaded without a restart.

Every regular file directly in the folder counts (any name; one number per line, '#' comments,
blank lines ok); sub-folders are ignored. A poller thread compares the folder's signature (its
resolved path plus each file's name, inode, size, mtime and ctime) every `poll_seconds` and,
when it changed, reads all files into a new set and swaps the reference, so readers see the old
set or the new one, never a half-built one. Replacing the whole folder through a symlink swap
changes the resolved path and so triggers a reload too.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .numbers import NumberSet, iter_numbers, number_key, open_number_file

log = logging.getLogger(__name__)

_Signature = tuple[str, tuple[tuple[str, int, int, int, int, int], ...]]


class FileBlacklist(NumberSet):
    def __init__(self, folder: str | Path, poll_seconds: float = 1.0):
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, not {poll_seconds}")
        self.folder = Path(folder)
        self.poll_seconds = poll_seconds
        self.version = 0
        self.bad_lines = 0  # lines of the current files that held no number
        self._keys: set[int | str] = set()  # replaced, never mutated: readers need no lock
        self._signature: _Signature | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # cuts the poller's current wait short (stop, new interval)
        self.reload_if_changed()
        self._thread = threading.Thread(target=self._poll, name=f"file-blacklist:{self.folder}",
                                        daemon=True)
        self._thread.start()

    def set_poll_seconds(self, poll_seconds: float) -> None:
        """Poll every `poll_seconds` from now on (a reload changed file_blacklist.poll_seconds)."""
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, not {poll_seconds}")
        if poll_seconds != self.poll_seconds:
            self.poll_seconds = poll_seconds
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def reload_if_changed(self) -> bool:
        """Rebuilds the set when the folder changed since the last load; True if it reloaded."""
        with self._reload_lock:
            return self._reload_if_changed()

    def _reload_if_changed(self) -> bool:
        signature = self._scan()
        if signature == self._signature:
            return False
        keys: set[int | str] = set()
        bad = 0
        resolved = Path(signature[0])
        for name, *_ in signature[1]:
            path = resolved / name
            bad_lines: list[int] = []
            try:
                with open_number_file(path) as f:
                    keys.update(map(number_key, iter_numbers(f, bad_lines)))
            except FileNotFoundError:
                return False  # changed while we read it: the next poll sees a settled folder
            except OSError as e:
                # retried when the file changes; ctime is in the signature, so a chmod counts
                log.warning("file blacklist: cannot read %s: %s; its numbers are not listed", path, e)
                continue
            if bad_lines:
                log.warning("file blacklist: %s: %d line(s) hold no number, first at line %d",
                            path, len(bad_lines), bad_lines[0])
            bad += len(bad_lines)
        self._keys = keys
        self.bad_lines = bad
        self._signature = signature
        self.version += 1
        log.info("file blacklist: loaded %d numbers from %d file(s) in %s (version %d)",
                 len(keys), len(signature[1]), self.folder, self.version)
        return True

    def _scan(self) -> _Signature:
        try:
            resolved = os.path.realpath(self.folder)
            files = []
            with os.scandir(resolved) as it:
                for entry in it:
                    try:
                        if not entry.is_file():  # follows symlinked files; skips folders
                            continue
                        st = entry.stat()
                    except FileNotFoundError:  # deleted while we looked: it is gone anyway
                        continue
                    files.append((entry.name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                  st.st_ctime_ns))
        except (FileNotFoundError, NotADirectoryError):
            if self._signature != ("", ()):  # say it once, not every poll
                log.warning("file blacklist: %s is not an existing folder; no numbers listed",
                            self.folder)
            return ("", ())
        return (resolved, tuple(sorted(files)))

    def _poll(self) -> None:
        while True:
            if self._wake.wait(self.poll_seconds):
                self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reload_if_changed()
            except Exception:  # the poller must outlive any one bad folder state
                log.exception("file blacklist: reload of %s failed; keeping the previous set",
                              self.folder)
