"""Exclusive SQLite mode's journal: what a charge's answer waits for is one frame in
`<file>.charges`; the folder applies frames to the tables later; an open folds what is left."""
from __future__ import annotations

import sqlite3
import struct

import pytest

from policy.counters import ExclusiveSqliteCounterStore, SqliteCounterStore
from policy.counters.sqlite_exclusive import JOURNAL_SUFFIX
from tests.counters.counters_hammer import NOW, plan
from tests.counters.test_counter_exclusive import child, one


def tables(path):
    db = sqlite3.connect(path)
    try:
        return (db.execute("SELECT count(*) FROM requests").fetchone()[0],
                db.execute("SELECT coalesce(sum(value), 0) FROM counters").fetchone()[0],
                db.execute("SELECT balance FROM balances WHERE account = '900001'").fetchone())
    finally:
        db.close()


def killed_after_answering(path, n=50):
    """A daemon that answers n charges and dies before its folder runs (kill -9 class)."""
    proc = child(f"""
        import os
        from policy.counters import sqlite_exclusive
        sqlite_exclusive.FOLD_EVERY = 3600   # nothing is folded before the process dies
        from policy.counters import ExclusiveSqliteCounterStore, SqliteCounterStore
        from tests.counters.counters_hammer import NOW, plan
        from tests.counters.test_counter_exclusive import one
        s = ExclusiveSqliteCounterStore({path!r})
        s.set_opening_balance("900001", 1000)
        for i in range({n}):
            s.charge(f"r{{i}}", one(plan(1000), f"139{{i:08d}}"), "900001", 2, NOW.timestamp(),
                     answer=lambda res, i=i: b"answer %d" % i)
        os._exit(0)
    """)
    assert proc.wait(timeout=60) == 0


def test_answered_charges_only_in_the_journal_are_folded_at_open(tmp_path):
    path = str(tmp_path / "c.db")
    killed_after_answering(path)
    assert tables(path) == (0, 0, None)  # the tables never saw them: only the journal did
    store = ExclusiveSqliteCounterStore(path)
    try:
        assert tables(path) == (50, 50, (900,))  # folded at open, before any charge
        again = store.charge("r49", one(plan(1000), "13900000049"), "900001", 2, NOW.timestamp())
        assert again.replayed and again.stored_response == b"answer 49" and again.balance_after == 900
        key = one(plan(1000))[0].increments[0].key
        assert store.peek([key]) == {key: 50}
    finally:
        store.close()
    store = ExclusiveSqliteCounterStore(path)  # a second open folds nothing twice
    try:
        assert tables(path) == (50, 50, (900,)) and store.balance("900001") == 900
    finally:
        store.close()


def test_a_torn_or_corrupt_last_frame_is_ignored(tmp_path):
    path = str(tmp_path / "c.db")
    killed_after_answering(path, n=10)
    with open(path + JOURNAL_SUFFIX, "ab") as j:
        j.write(struct.pack("<II", 500, 0) + b"half a frame")   # the write the crash cut short
    store = ExclusiveSqliteCounterStore(path)
    try:
        assert tables(path) == (10, 10, (980,))
        assert store.charge("r10", one(plan(1000), "13900000010"), "900001", 2, NOW.timestamp()).ok_indexes == [0]
    finally:
        store.close()
    assert tables(path) == (11, 11, (978,))

    killed_after_answering(str(tmp_path / "d.db"), n=3)
    journal = str(tmp_path / "d.db") + JOURNAL_SUFFIX
    data = bytearray(open(journal, "rb").read())
    data[-1] ^= 0xFF   # the last frame's payload no longer matches its CRC
    open(journal, "wb").write(bytes(data))
    store = ExclusiveSqliteCounterStore(str(tmp_path / "d.db"))
    try:
        assert tables(str(tmp_path / "d.db")) == (2, 2, (996,))
        assert store.charge("r1", one(plan(1000), "13900000001"), "900001", 2, NOW.timestamp()).replayed
        retry = store.charge("r2", one(plan(1000), "13900000002"), "900001", 2, NOW.timestamp())
        assert not retry.replayed and retry.ok_indexes == [0] and retry.balance_after == 994  # never answered
    finally:
        store.close()


@pytest.mark.parametrize("fold_process", [False, True], ids=["fold-thread", "fold-process"])
def test_the_folder_applies_the_journal_and_records_how_far(tmp_path, fold_process):
    path = str(tmp_path / "c.db")
    store = ExclusiveSqliteCounterStore(path, fold_process=fold_process)
    try:
        store.set_opening_balance("900001", 100)
        p = plan(1000)
        for i in range(20):
            store.charge(f"f{i}", one(p, f"1370000{i:04d}"), "900001", 1, NOW.timestamp(),
                         answer=lambda res: b"ok")
        assert store.fold_now()
        assert tables(path) == (20, 20, (80,))
        db = sqlite3.connect(path)
        epoch, position = db.execute("SELECT epoch, position FROM journal_state").fetchone()
        db.close()
        assert epoch == store._journal.epoch and position == store._journal.size
        assert store.charge("f3", one(p, "13700000003"), "900001", 1, NOW.timestamp()).stored_response == b"ok"
    finally:
        store.close()


def test_expired_counters_are_swept_by_a_rolling_pass_without_an_expiry_index(tmp_path, monkeypatch):
    from datetime import timedelta

    from policy.counters import LimitPlan, RecipientCharge, SqliteCounterStore, sqlite_exclusive
    from policy.rules.model import Limit
    monkeypatch.setattr(sqlite_exclusive, "SWEEP_EVERY", 1)   # a sweep in every fold
    monkeypatch.setattr(sqlite_exclusive, "SWEEP_BATCH", 4)   # a few rows looked at per sweep
    path = str(tmp_path / "c.db")
    store = ExclusiveSqliteCounterStore(path)
    p = LimitPlan([Limit(id="min", scope="account_number", max=5, window="minute")])
    for i in range(20):
        store.charge(f"old{i}", [RecipientCharge(0, p.increments("900001", "ch1", f"1380000{i:04d}", "h", 1, NOW), 1)],
                     None, 5, NOW.timestamp())
    assert store.fold_now()
    assert tables(path)[:2] == (20, 20)
    later = NOW + timedelta(days=2)
    for i in range(12):  # each fold sweeps the next stretch of the primary key, then wraps
        store.charge(f"new{i}", [RecipientCharge(0, p.increments("900001", "ch1", "13900000000", "h", 1, later), 1)],
                     None, 5, later.timestamp())
        assert store.fold_now()
    db = sqlite3.connect(path)
    assert db.execute("SELECT base FROM counters").fetchall() == [("an:min:900001:13900000000:minute1",)]
    assert db.execute("SELECT count(*) FROM requests WHERE id LIKE 'old%'").fetchone() == (0,)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'counters_expiry'").fetchall() == []
    db.close()
    store.close()
    SqliteCounterStore(path).close()  # shared mode builds its index again
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'counters_expiry'").fetchall() == [("counters_expiry",)]
    db.close()


def test_a_shared_mode_open_folds_what_an_exclusive_owner_left_in_its_journal(tmp_path):
    """A file may change mode between restarts: answered charges of an exclusive owner killed
    before its folder ran must not be lost (nor charged again on retry) in shared mode."""
    path = str(tmp_path / "c.db")
    killed_after_answering(path)
    store = SqliteCounterStore(path)
    try:
        assert tables(path) == (50, 50, (900,))
        again = store.charge("r7", one(plan(1000), "13900000007"), "900001", 2, NOW.timestamp())
        assert again.replayed and again.stored_response == b"answer 7"
        assert store.balance("900001") == 900
    finally:
        store.close()
    reopened = ExclusiveSqliteCounterStore(path)   # and back: nothing folded twice
    try:
        assert tables(path) == (50, 50, (900,)) and reopened.balance("900001") == 900
    finally:
        reopened.close()
