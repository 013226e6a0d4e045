"""Reload when the rules folder changes: in-place edits, new or deleted files, and a symlink
swap of the whole folder (how Kubernetes updates a mounted ConfigMap)."""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("smspolicy.watch")


def folder_signature(root: str) -> tuple:
    """Names, sizes and mtimes of the rule files, and where the folder really points."""
    real = os.path.realpath(root)
    entries = []
    for dirpath, dirnames, filenames in os.walk(real, followlinks=True):
        rel = os.path.relpath(dirpath, real)
        # tests/ is for `smspolicy test`; the file blacklist has its own watcher
        dirnames[:] = sorted(d for d in dirnames if not (rel == "." and d in ("tests",)) and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            entries.append((rel, name, st.st_size, st.st_mtime_ns))
    return real, tuple(entries)


class FolderWatcher:
    def __init__(self, root: str, interval: float, on_change, ignore: tuple[str, ...] = ()):
        self.root, self.interval, self.on_change = root, interval, on_change
        self.ignore = tuple(os.path.realpath(p) for p in ignore)
        self._stop = threading.Event()
        self._last = self._signature()
        self._thread = threading.Thread(target=self._run, name="rules-watch", daemon=True)
        self._thread.start()

    def _signature(self):
        real, entries = folder_signature(self.root)
        if self.ignore:
            entries = tuple(e for e in entries if not self._ignored(os.path.join(real, e[0], e[1])))
        return real, entries

    def _ignored(self, path: str) -> bool:
        """Whether the file is inside an ignored folder: by whole path components, so that
        ignoring blacklist-files/ does not also ignore blacklist-files-2/."""
        path = os.path.normpath(path)
        return any(path == folder or path.startswith(folder.rstrip(os.sep) + os.sep) for folder in self.ignore)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sig = self._signature()
            except OSError:
                continue  # mid-swap; look again next time
            if sig != self._last:
                self._last = sig
                try:
                    self.on_change()
                except Exception:  # noqa: BLE001 - the watcher must outlive a failed reload
                    log.exception("reload after a change of %s failed", self.root)

    def stop(self) -> None:
        self._stop.set()
