"""Folds in a child process (policy.counters.fold_process): a child that dies is replaced with
nothing lost or counted twice, a stretch asked for again after its COMMIT is not applied twice,
and a child folding for an owner that is gone cannot fold what the next owner replayed."""
from __future__ import annotations

import os
import shutil
import signal
import threading

import pytest

from policy.counters import CounterStoreError, ExclusiveSqliteCounterStore, sqlite_exclusive
from policy.counters.fold_process import FoldProcess
from policy.counters.model import StaleFold
from policy.counters.sqlite_exclusive import _HEADER, JOURNAL_SUFFIX
from tests.counters.counters_hammer import NOW, plan
from tests.counters.test_counter_exclusive import one
from tests.counters.test_counter_journal import killed_after_answering, tables


def charges(store, p, tag: str, n: int) -> None:
    for i in range(n):
        assert store.charge(f"{tag}{i}", one(p, f"1370000{i:04d}"), "900001", 1, NOW.timestamp(),
                            answer=lambda res: b"ok").ok_indexes == [0]


def test_a_killed_fold_process_is_replaced_and_counts_stay_exact(tmp_path):
    path = str(tmp_path / "c.db")
    store = ExclusiveSqliteCounterStore(path, fold_process=True)
    try:
        store.set_opening_balance("900001", 100)
        p = plan(1000)
        charges(store, p, "a", 10)
        assert store.fold_now()
        first = store._fold_process._proc
        assert tables(path) == (10, 10, (90,))
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        charges(store, p, "b", 10)
        assert store.fold_now()   # the first attempt fails on the dead child, the retry folds
        assert store._fold_process._proc.pid != first.pid
        assert tables(path) == (20, 20, (80,))
        assert store.charge("a3", one(p, "13700000003"), "900001", 1, NOW.timestamp()).replayed
    finally:
        store.close()
    reopened = ExclusiveSqliteCounterStore(path, fold_process=True)   # the journal adds nothing
    try:
        assert tables(path) == (20, 20, (80,)) and reopened.balance("900001") == 80
    finally:
        reopened.close()


def test_a_stretch_folded_before_is_not_applied_twice(tmp_path):
    path = str(tmp_path / "c.db")
    store = ExclusiveSqliteCounterStore(path, fold_process=True)
    try:
        store.set_opening_balance("900001", 100)
        p = plan(1000)
        start = store._fold_pos
        charges(store, p, "a", 5)
        assert store.fold_now()
        end, epoch = store._journal.size, store._journal.epoch
        # what the folder sends again when a child died between its COMMIT and its answer
        store._fold_process.fold(path + JOURNAL_SUFFIX, start, end, 6, epoch, end, (epoch, start))
        assert tables(path) == (5, 5, (95,))
    finally:
        store.close()


@pytest.mark.parametrize("rotate", [False, True], ids=["fold", "rotation"])
def test_a_child_killed_after_its_commit_while_charges_go_on_counts_nothing_twice(tmp_path, monkeypatch, rotate):
    """The child commits, then dies before answering; charges answered meanwhile join the
    unfolded entries. The folder must find the stretch in the file, not fold it again (nor,
    for a rotation, take the file's new epoch as covering the later charges)."""
    path = str(tmp_path / "c.db")
    store = ExclusiveSqliteCounterStore(path, fold_process=True)
    try:
        store.set_opening_balance("900001", 100)
        assert store.fold_now()
        fp, real = store._fold_process, store._fold_process.fold
        committed, go_on = threading.Event(), threading.Event()

        def commit_then_die(*job):
            real(*job)
            if not committed.is_set():
                committed.set()
                go_on.wait(10)
                fp._proc.send_signal(signal.SIGKILL)
                fp._proc.wait()
                raise CounterStoreError("the counter fold process exited (status -9)")
        monkeypatch.setattr(fp, "fold", commit_then_die)
        p = plan(1000)
        charges(store, p, "a", 3)
        if rotate:
            monkeypatch.setattr(sqlite_exclusive, "ROTATE_BYTES", 100)
        with store._cond:
            store._wake_folder()
        assert committed.wait(10)
        charges(store, p, "b", 2)   # answered while the first fold is in flight
        go_on.set()
        monkeypatch.setattr(sqlite_exclusive, "ROTATE_BYTES", 64 << 20)
        assert store.fold_now()
        assert tables(path) == (5, 5, (95,))
    finally:
        store.close()
    reopened = ExclusiveSqliteCounterStore(path)
    try:
        assert tables(path) == (5, 5, (95,)) and reopened.balance("900001") == 95
        assert reopened.charge("b1", one(plan(1000), "13700000001"), "900001", 1, NOW.timestamp()).replayed
    finally:
        reopened.close()


def test_a_fold_left_over_from_a_killed_owner_cannot_apply_what_the_next_owner_replayed(tmp_path):
    """The fold child of a daemon killed -9 outlives it for a moment; a job it still holds must
    not fold a stretch the next owner has replayed at its open."""
    path = str(tmp_path / "c.db")
    killed_after_answering(path)          # 50 answered charges, only in the journal
    shutil.copy(path + JOURNAL_SUFFIX, tmp_path / "old.charges")
    old_epoch = _HEADER.unpack_from((tmp_path / "old.charges").read_bytes())[1]
    size = os.path.getsize(tmp_path / "old.charges")
    ExclusiveSqliteCounterStore(path).close()   # the next owner: replays the journal at open
    assert tables(path) == (50, 50, (900,))
    orphan = FoldProcess(path, 5000, 10_000, 1000)
    try:
        with pytest.raises(StaleFold, match="another process folded this stretch"):
            count = len(sqlite_exclusive.read_journal_range(str(tmp_path / "old.charges"), _HEADER.size, size))
            orphan.fold(str(tmp_path / "old.charges"), _HEADER.size, size, count, old_epoch, size,
                        (old_epoch, _HEADER.size))
    finally:
        orphan.close()
    assert tables(path) == (50, 50, (900,))
