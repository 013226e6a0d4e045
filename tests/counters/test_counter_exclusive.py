"""Exclusive SQLite mode: one owner per file, answers only once committed, bounded memory,
a failed group commit fails its charges cleanly."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from policy.counters import (CounterFileBusy, CounterStoreError, ExclusiveSqliteCounterStore, LimitPlan,
                             RecipientCharge, SqliteCounterStore, make_store)
from policy.rules.model import Limit
from tests.counters.counters_hammer import NOW, plan

ROOT = __file__.rsplit("/tests/", 1)[0]


def one(p, number="13800000001"):
    return [RecipientCharge(0, p.increments("900001", "ch1", number, "h", 1, NOW), 1)]


def child(code: str) -> subprocess.Popen:
    """A separate Python process (another daemon) running `code`; it prints READY when set."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)


def test_a_second_process_cannot_open_an_owned_file_and_is_told_who_owns_it(tmp_path):
    path = str(tmp_path / "c.db")
    owner = child(f"""
        import os, sys
        from policy.counters import ExclusiveSqliteCounterStore
        s = ExclusiveSqliteCounterStore({path!r})
        print("READY", os.getpid(), flush=True)
        sys.stdin.readline()
        s.close()
    """)
    try:
        ready, pid = owner.stdout.readline().split()
        assert ready == "READY"
        with pytest.raises(CounterFileBusy, match=f"owned by pid {pid} in exclusive mode.*shared"):
            ExclusiveSqliteCounterStore(path)
        with pytest.raises(CounterFileBusy, match=f"owned by pid {pid}"):
            SqliteCounterStore(path)  # a shared-mode daemon would make the owner's memory wrong
    finally:
        owner.stdin.write("\n")
        owner.stdin.flush()
        owner.wait(timeout=30)
    ExclusiveSqliteCounterStore(path).close()  # the owner is gone: the file is free again


def test_exclusive_refuses_a_file_in_shared_use(tmp_path):
    path = str(tmp_path / "c.db")
    shared = SqliteCounterStore(path)
    with pytest.raises(CounterFileBusy, match="open in shared mode"):
        ExclusiveSqliteCounterStore(path)
    other_shared = SqliteCounterStore(path)  # shared users coexist
    other_shared.close()
    shared.close()


def test_an_answered_charge_survives_the_process_dying_at_once(tmp_path):
    path = str(tmp_path / "c.db")
    proc = child(f"""
        import os
        from policy.counters import ExclusiveSqliteCounterStore
        from tests.counters.counters_hammer import NOW, plan
        from tests.counters.test_counter_exclusive import one
        s = ExclusiveSqliteCounterStore({path!r})
        s.set_opening_balance("900001", 100)
        for i in range(50):
            s.charge(f"r{{i}}", one(plan(1000), f"139{{i:08d}}"), "900001", 2, NOW.timestamp(),
                     answer=lambda res: b"answer")
        os._exit(0)  # no close(): whatever was answered must already be on disk
    """)
    assert proc.wait(timeout=60) == 0
    store = ExclusiveSqliteCounterStore(path)
    try:
        assert store.balance("900001") == 0
        again = store.charge("r49", one(plan(1000), "13900000049"), "900001", 2, NOW.timestamp())
        assert again.replayed and again.stored_response == b"answer" and again.balance_after == 0
        key = one(plan(1000))[0].increments[0].key
        assert store.peek([key]) == {key: 50}
    finally:
        store.close()


def test_batch_charges_wait_once_and_each_is_replayed_after_reopening(tmp_path):
    path = str(tmp_path / "c.db")
    store = ExclusiveSqliteCounterStore(path)
    p = plan(3)
    results = [store.charge(f"b{i}", one(p, f"1380000000{i}"), None, 5, NOW.timestamp(), wait=False)
               for i in range(5)]
    assert [len(r.ok_indexes) for r in results] == [1, 1, 1, 0, 0]  # exact within the batch
    store.wait_durable(max(r.durable for r in results))
    store.close()
    store = ExclusiveSqliteCounterStore(path)
    assert all(store.charge(f"b{i}", one(p), None, 5, NOW.timestamp()).replayed for i in range(5))
    store.close()


def test_cache_trimmed_to_its_bound_keeps_exact_counts(tmp_path):
    store = ExclusiveSqliteCounterStore(str(tmp_path / "c.db"), cache_max=20)
    p = LimitPlan([Limit(id="num", scope="account_number", max=2, window="day")])
    numbers = [f"1380000{i:04d}" for i in range(100)]
    for rnd in range(3):
        for i, n in enumerate(numbers):
            res = store.charge(f"{rnd}-{i}", one(p, n), None, 5, NOW.timestamp())
            assert len(res.ok_indexes) == (1 if rnd < 2 else 0), (rnd, n)
            assert res.values[0][1] == rnd
    assert len(store._values) <= 20
    store.close()


def test_a_failed_journal_write_fails_its_charges_and_the_retry_counts_once(tmp_path):
    path = str(tmp_path / "c.db")
    store = ExclusiveSqliteCounterStore(path, busy_timeout_ms=50)
    store.set_opening_balance("900001", 10)
    p = plan(10)
    assert store.charge("r0", one(p), "900001", 1, NOW.timestamp()).ok_indexes == [0]
    # the journal refuses writes (a real EBADF, as a full or failing disk would) and the file
    # is locked (ignoring the owner lock, as a bug would), so memory cannot be resynced either
    intruder = sqlite3.connect(path, isolation_level=None)
    intruder.execute("BEGIN IMMEDIATE")
    good_fd = store._journal.fd
    store._journal.fd = os.open(store._journal.path, os.O_RDONLY)
    errors = []

    def charge(i):
        try:
            store.charge(f"r{i}", one(p), "900001", 1, NOW.timestamp())
        except CounterStoreError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=charge, args=(i,)) for i in (1, 2, 3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert len(errors) == 3 and all("nothing applied" in e for e in errors), errors
    os.close(good_fd)   # the store replaces the journal it could not write
    intruder.execute("ROLLBACK")
    intruder.close()
    assert store.balance("900001") == 9  # memory forgot what was never written
    for i in (1, 2, 3):  # the front-end's retries
        res = store.charge(f"r{i}", one(p), "900001", 1, NOW.timestamp())
        assert not res.replayed and res.ok_indexes == [0]
    key = one(p)[0].increments[0].key
    assert store.peek([key]) == {key: 4} and store.balance("900001") == 6
    store.close()
    reopened = ExclusiveSqliteCounterStore(path)
    assert reopened.peek([key]) == {key: 4} and reopened.balance("900001") == 6
    reopened.close()


@pytest.mark.parametrize("fold_process", [False, True], ids=["fold-thread", "fold-process"])
def test_a_locked_counter_file_delays_the_fold_not_the_charges(tmp_path, fold_process):
    # (before the journal, a commit that found the file locked failed its charges)
    path = str(tmp_path / "c.db")
    store = ExclusiveSqliteCounterStore(path, busy_timeout_ms=50, fold_process=fold_process)
    store.set_opening_balance("900001", 10)
    p = plan(10)
    intruder = sqlite3.connect(path, isolation_level=None)
    intruder.execute("BEGIN IMMEDIATE")
    for i in range(3):
        assert store.charge(f"r{i}", one(p), "900001", 1, NOW.timestamp()).ok_indexes == [0]
    assert not store.fold_now(timeout=0.5)  # the folder keeps trying
    assert store.charge("r1", one(p), "900001", 1, NOW.timestamp()).replayed
    intruder.execute("ROLLBACK")
    intruder.close()
    assert store.fold_now()
    key = one(p)[0].increments[0].key
    on_file = sqlite3.connect(path)
    assert on_file.execute("SELECT balance FROM balances").fetchall() == [(7,)]
    assert on_file.execute("SELECT count(*) FROM requests").fetchone() == (3,)
    on_file.close()
    assert store.peek([key]) == {key: 3}
    store.close()
    reopened = ExclusiveSqliteCounterStore(path)
    assert reopened.peek([key]) == {key: 3} and reopened.balance("900001") == 7
    reopened.close()


def test_make_store_modes(tmp_path):
    store = make_store("sqlite", str(tmp_path / "a.db"), "", sqlite_mode="exclusive")
    assert isinstance(store, ExclusiveSqliteCounterStore)
    store.close()
    store = make_store("sqlite", str(tmp_path / "b.db"), "", sqlite_mode="shared")
    assert isinstance(store, SqliteCounterStore)
    store.close()
    with pytest.raises(ValueError, match="unknown SQLite counter mode 'both'"):
        make_store("sqlite", str(tmp_path / "c.db"), "", sqlite_mode="both")


def test_counters_not_in_memory_are_found_on_file_after_the_filter_grows(tmp_path, monkeypatch):
    from policy.counters import sqlite_exclusive
    path = str(tmp_path / "c.db")
    p = LimitPlan([Limit(id="num", scope="account_number", max=1, window="day")])
    first = ExclusiveSqliteCounterStore(path)
    for i in range(50):
        assert first.charge(f"a{i}", one(p, f"1380000{i:04d}"), None, 5, NOW.timestamp()).ok_indexes == [0]
    first.close()
    store = ExclusiveSqliteCounterStore(path, cache_max=10)  # filter built from the file at open
    store._filter.capacity = 20  # so that it is rebuilt while counters are being added
    for i in range(50, 120):
        assert store.charge(f"a{i}", one(p, f"1380000{i:04d}"), None, 5, NOW.timestamp()).ok_indexes == [0]
    for i in range(120):  # every number is at its limit, whether in memory, evicted or from before
        res = store.charge(f"b{i}", one(p, f"1380000{i:04d}"), None, 5, NOW.timestamp())
        assert res.rejected == {0: ("MA:0022", "num")} and res.values[0][1] == 1, i
    store.close()
