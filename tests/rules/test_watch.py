"""The rules-folder watcher (policy/daemon/watch.py): what it ignores."""
import os
import time

from policy.daemon.watch import FolderWatcher

from .helpers import ACCOUNT, write_rules


def _wait_for(predicate, seconds=3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_the_ignored_folder_is_matched_by_whole_path_components(tmp_path):
    # ignoring blacklist-files/ by string prefix also ignored blacklist-files-2/, whose rules the
    # loader reads: editing them never reloaded
    write_rules(tmp_path, {"a.yaml": ACCOUNT, "blacklist-files/x.txt": "13900000001\n",
                           "blacklist-files-2/more.yaml": "rules:\n"})
    calls = []
    watcher = FolderWatcher(str(tmp_path), 0.05, lambda: calls.append(1),
                            ignore=(os.path.join(str(tmp_path), "blacklist-files"),))
    try:
        (tmp_path / "blacklist-files" / "x.txt").write_text("13900000001\n13900000002\n")
        time.sleep(0.3)
        assert calls == []  # the file blacklist is live data with its own poller
        (tmp_path / "blacklist-files-2" / "more.yaml").write_text(
            "rules:\n  - {id: x, code: 'MA:0001', priority: 5, when: {fact: message.hour, eq: 1}}\n")
        assert _wait_for(lambda: calls)
    finally:
        watcher.stop()
