"""wait_durable(): the daemon answers a decision only once its record is committed."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from policy.audit.decision_log import DecisionLog

from .conftest import make_record


def _rows(path) -> int:
    return sqlite3.connect(str(path)).execute("SELECT count(*) FROM decisions").fetchone()[0]


def test_wait_durable_returns_once_the_record_is_committed(log_path):
    # a writer that would otherwise sit on the record for 5 seconds
    log = DecisionLog(str(log_path), flush_interval=5.0)
    try:
        time.sleep(0.05)   # let the writer start waiting
        for i in range(3):
            assert log.append(make_record(i))
            started = time.monotonic()
            assert log.wait_durable(log.mark(), timeout=5)
            assert time.monotonic() - started < 2.0   # woke the writer, did not wait its tick
            assert _rows(log_path) == i + 1            # readable by another connection
    finally:
        log.close()


def test_marks_of_concurrent_appenders_are_all_covered(log_path):
    log = DecisionLog(str(log_path))
    failures = []

    def worker(base: int) -> None:
        for i in range(50):
            log.append(make_record(base + i))
            mark = log.mark()
            if not log.wait_durable(mark, timeout=10) or log._committed < mark:
                failures.append(base + i)

    try:
        threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures
        assert _rows(log_path) == 200
    finally:
        log.close()


def test_wait_durable_gives_up_while_the_log_cannot_be_written(log_path):
    log = DecisionLog(str(log_path))
    try:
        log.healthy = False   # what the writer sets when the disk refuses a batch
        log._committed = -1   # nothing durable yet
        started = time.monotonic()
        assert log.wait_durable(log.mark(), timeout=5) is False
        assert time.monotonic() - started < 1.0   # the answer is not held for the timeout
    finally:
        log._committed = 0
        log.healthy = True
        log.close()


def test_sync_mode_reaches_sqlite_and_a_bad_one_is_refused(log_path, tmp_path):
    # log_sync: normal keeps answers off the fsync path, full pays one fsync per commit
    for mode, pragma in (("normal", 1), ("full", 2)):
        log = DecisionLog(str(tmp_path / f"{mode}.db"), sync=mode)
        try:
            assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == pragma
            assert log.append(make_record(1)) and log.wait_durable(log.mark(), timeout=5)
        finally:
            log.close()
    with pytest.raises(ValueError) as e:
        DecisionLog(str(log_path), sync="off")
    assert str(e.value) == "sync must be one of normal, full, not 'off'"
