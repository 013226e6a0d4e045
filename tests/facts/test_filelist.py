import os
import time

import pytest

from policy.facts.filelist import FileBlacklist

POLL = 0.2


def _wait_for(predicate, seconds=4 * POLL + 0.5):
    """True once predicate() holds, polling it for up to `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "blacklists"
    d.mkdir()
    (d / "old.txt").write_text("# complaints\n13800138000\n\n+86 139 0000 0001 # via web\n")
    return d


@pytest.fixture
def watched(folder):
    bl = FileBlacklist(folder, POLL)
    yield bl
    bl.stop()


def test_loads_every_file_at_start(watched):
    assert watched.contains("13800138000") and watched.contains("13900000001")
    assert watched.size == 2 and watched.version == 1


def test_a_dropped_file_is_seen_without_restart(folder, watched):
    (folder / "new-list").write_text("13700000000\n")
    assert _wait_for(lambda: watched.contains("13700000000"), seconds=2 * POLL + 0.1)
    assert watched.version == 2


def test_an_edited_file_is_reloaded(folder, watched):
    (folder / "old.txt").write_text("13600000000\n")
    assert _wait_for(lambda: watched.contains("13600000000"))
    assert not watched.contains("13800138000")


def test_a_deleted_files_numbers_disappear(folder, watched):
    (folder / "old.txt").unlink()
    assert _wait_for(lambda: not watched.contains("13800138000"))
    assert watched.size == 0


def test_sub_folders_are_ignored(folder, watched):
    (folder / "archive").mkdir()
    (folder / "archive" / "x.txt").write_text("13500000000\n")
    (folder / "trigger.txt").write_text("13400000000\n")
    assert _wait_for(lambda: watched.contains("13400000000"))
    assert not watched.contains("13500000000")


def test_symlink_swap_of_the_whole_folder(tmp_path, folder):
    other = tmp_path / "v2"
    other.mkdir()
    (other / "list").write_text("13300000000\n")
    link = tmp_path / "current"
    link.symlink_to(folder)
    bl = FileBlacklist(link, POLL)
    try:
        assert bl.contains("13800138000")
        tmp_link = tmp_path / "current.new"
        tmp_link.symlink_to(other)
        os.replace(tmp_link, link)  # atomic swap, as deploy tools do it
        assert _wait_for(lambda: bl.contains("13300000000"))
        assert not bl.contains("13800138000")
    finally:
        bl.stop()


def test_missing_folder_is_empty_until_it_appears(tmp_path):
    folder = tmp_path / "later"
    bl = FileBlacklist(folder, POLL)
    try:
        assert bl.size == 0
        folder.mkdir()
        (folder / "a").write_text("13800138000\n")
        assert _wait_for(lambda: bl.contains("13800138000"))
    finally:
        bl.stop()


def test_unchanged_folder_is_not_reloaded(watched):
    time.sleep(POLL * 4)
    assert watched.version == 1
    assert watched.reload_if_changed() is False


def test_bad_lines_are_counted_and_skipped(folder, watched):
    (folder / "mixed").write_text("13700000000\nnot a number\n")
    assert _wait_for(lambda: watched.contains("13700000000"))
    assert watched.bad_lines == 1


def test_stop_ends_the_poller(folder):
    bl = FileBlacklist(folder, POLL)
    bl.stop()
    assert not bl._thread.is_alive()
    (folder / "after").write_text("13700000000\n")
    time.sleep(POLL * 3)
    assert not bl.contains("13700000000")


def test_set_poll_seconds_retimes_the_poller_at_once(folder):
    bl = FileBlacklist(folder, 60.0)  # would not look again for a minute
    try:
        bl.set_poll_seconds(POLL)
        assert bl.poll_seconds == POLL
        (folder / "new.txt").write_text("13700000001\n")
        assert _wait_for(lambda: bl.contains("13700000001"))
        with pytest.raises(ValueError):
            bl.set_poll_seconds(0)
    finally:
        bl.stop()


def test_a_reload_that_changes_poll_seconds_retimes_the_file_blacklist(tmp_path):
    # the daemon's Runtime kept the old poller (and its interval) whenever the folder stayed the same
    import shutil
    from pathlib import Path
    from policy.daemon.runtime import Runtime
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    runtime = Runtime(str(rules), str(tmp_path / "var"))
    try:
        watcher = runtime._file_blacklist
        assert runtime.current().policy.file_blacklist.poll_seconds == watcher.poll_seconds == 1.0
        platform = rules / "platform.yaml"
        text = platform.read_text(encoding="utf-8")
        assert "poll_seconds: 1.0" in text
        platform.write_text(text.replace("poll_seconds: 1.0", "poll_seconds: 30.0"), encoding="utf-8")
        outcome = runtime.reload()
        assert outcome.ok, outcome.errors
        assert runtime.current().policy.file_blacklist.poll_seconds == 30.0
        assert runtime._file_blacklist is watcher  # the same folder: its numbers stay loaded
        assert watcher.poll_seconds == 30.0
    finally:
        runtime.close()
