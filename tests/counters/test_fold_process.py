"""Folds in a child process (policy.counters.fold_process): a child that dies is replaced with
nothing lost or counted twice, and a stretch asked for again after its COMMIT is not applied
twice."""
from __future__ import annotations

import os
import signal

from policy.counters import ExclusiveSqliteCounterStore
from policy.counters.sqlite_exclusive import JOURNAL_SUFFIX
from tests.counters.counters_hammer import NOW, plan
from tests.counters.test_counter_exclusive import one
from tests.counters.test_counter_journal import tables


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
        store._fold_process.fold(path + JOURNAL_SUFFIX, start, end, 6, epoch, end)
        assert tables(path) == (5, 5, (95,))
    finally:
        store.close()
