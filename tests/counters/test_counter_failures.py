"""When the store cannot charge, the caller gets CounterStoreError and nothing counts twice."""
from __future__ import annotations

import socket
import threading
import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from policy.counters import CounterStoreError, LimitPlan, RecipientCharge, RedisCounterStore, SqliteCounterStore
from policy.rules.model import Limit

NOW = datetime(2024, 3, 15, 10, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PLAN = LimitPlan([Limit(id="daily", scope="account", max=10, window="day")])


def one():
    return [RecipientCharge(0, PLAN.increments("900001", "ch1", "13800000001", "h", 1, NOW), 1)]


def test_sqlite_locked_by_another_process_fails_cleanly_then_recovers(tmp_path):
    path = str(tmp_path / "c.db")
    store = SqliteCounterStore(path, busy_timeout_ms=50)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another daemon holding the write lock too long
    with pytest.raises(CounterStoreError, match="nothing applied"):
        store.charge("r1", one(), None, 5, NOW.timestamp())
    other.execute("ROLLBACK")
    other.close()
    res = store.charge("r1", one(), None, 5, NOW.timestamp())  # the front-end's retry
    assert not res.replayed and res.values[0][1] == 0
    store.close()


def test_redis_unreachable_at_start_is_a_clear_error_without_the_password():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    with pytest.raises(ConnectionError, match=f"Redis at redis://127.0.0.1:{port}/0: ") as err:
        RedisCounterStore(f"redis://user:s3cret@127.0.0.1:{port}/0", socket_timeout=0.5)
    assert "s3cret" not in str(err.value)


def test_redis_going_away_gives_counter_store_error(private_redis):
    proc, url = private_redis
    store = RedisCounterStore(url, socket_timeout=0.5)
    assert store.charge("r1", one(), None, 5, NOW.timestamp()).ok_indexes == [0]
    proc.kill()
    proc.wait()
    with pytest.raises(CounterStoreError, match="retrying with the same request id is safe"):
        store.charge("r2", one(), None, 5, NOW.timestamp())
    store.close()


def test_many_openers_of_one_new_file_all_get_a_wal_store(tmp_path):
    # the WAL switch skips SQLite's busy handler: daemons starting together used to fail here
    errors = []
    for trial in range(100):
        path = str(tmp_path / f"new{trial}.db")
        barrier = threading.Barrier(4)

        def open_it():
            barrier.wait(timeout=10)
            try:
                SqliteCounterStore(path).close()
            except Exception as exc:  # collected: the assertion below names them
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
    assert errors == []
