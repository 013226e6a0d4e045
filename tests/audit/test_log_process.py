"""The decision log written by a child process (policy.audit.log_process): the same file as the
thread writer's, answers only after commit, a writer that dies is replaced without losing or
doubling a record, a daemon that dies leaves every record it handed over committed."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from policy.audit import verify
from policy.audit.decision_log import DecisionLog, LogLockedError
from policy.audit.log_process import DecisionLogProcess

from .conftest import make_record

# what the two writers store alike (hashes differ: each file has its own chain id)
_SAME = ("decision_id, ts, request_id, account_id, destinations, content, content_sha256, msg_fmt, "
         "facts, counters, rules_version, matches, results, codes, rules, shadow_rules")


def _rows(path, columns: str = "decision_id") -> list:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(f"SELECT {columns} FROM decisions ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_the_process_writes_what_the_thread_writes_and_the_chain_verifies(tmp_path):
    records = [make_record(i, shadow="shadow-rule" if i % 3 else None) for i in range(300)]
    for cls, name in ((DecisionLog, "thread.db"), (DecisionLogProcess, "process.db")):
        log = cls(str(tmp_path / name))
        for r in records:
            assert log.append(dict(r))
        assert log.wait_durable(log.mark(), timeout=10)
        assert log.last_seq == 300
        assert log.close()
    assert _rows(tmp_path / "process.db", _SAME) == _rows(tmp_path / "thread.db", _SAME)
    report = verify([str(tmp_path / "process.db")])
    assert report.ok and report.records == 300


def _odd(i: int) -> dict:
    """Records JSON cannot carry as they are: they go pickled, and must be stored alike."""
    r = make_record(i)
    kind = i % 5
    if kind == 0:
        r["content"] = "【测试】\ud800 lone surrogate"          # malformed UCS-2
    elif kind == 1:
        r["content"] = b"\xff\xfe undecodable"                # kept as hex
    elif kind == 2:
        r["facts"] = {**r["facts"], "groups": {"a", "b"}}        # a set: sorted list
    elif kind == 3:
        r["counters"] = {"big": 1 << 70}                         # past 64 bits
    else:
        r["facts"] = {**r["facts"], 7: "a key that is not a string"}
    return r


@pytest.mark.parametrize("make", [make_record, _odd], ids=["plain", "odd"])
def test_odd_and_plain_records_are_stored_as_the_thread_stores_them(tmp_path, make):
    for cls, name in ((DecisionLog, "thread.db"), (DecisionLogProcess, "process.db")):
        log = cls(str(tmp_path / name))
        for i in range(20):
            assert log.append(make(i))
        assert log.close()
    assert _rows(tmp_path / "process.db", _SAME) == _rows(tmp_path / "thread.db", _SAME)
    assert verify([str(tmp_path / "process.db")]).ok


def test_wait_durable_returns_once_the_record_is_committed(tmp_path):
    path = tmp_path / "decisions.db"
    log = DecisionLogProcess(str(path), flush_interval=5.0)
    try:
        for i in range(3):
            assert log.append(make_record(i))
            assert log.pending == 1
            started = time.monotonic()
            assert log.wait_durable(log.mark(), timeout=5)
            assert time.monotonic() - started < 2.0   # sent at once, not at the flusher's tick
            assert len(_rows(path)) == i + 1           # readable by another connection
            assert log.pending == 0
    finally:
        log.close()


def test_a_killed_writer_is_replaced_and_no_record_is_lost_or_doubled(tmp_path):
    path = tmp_path / "decisions.db"
    log = DecisionLogProcess(str(path))
    try:
        for i in range(100):
            log.append(make_record(i))
        assert log.wait_durable(log.mark(), timeout=10)
        # committed, but the confirmations do not arrive: the frames stay to be sent again
        status, log._status = log._status, lambda st: None
        for i in range(100, 200):
            log.append(make_record(i))
        log._send()
        deadline = time.monotonic() + 10
        while len(_rows(path)) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_rows(path)) == 200 and log.pending == 100
        log._status = status
        first = log._proc.pid
        # stopped with records sent but not confirmed, then killed: some of them it may have
        # committed without saying so, the rest never reached the file
        os.kill(first, signal.SIGSTOP)
        for i in range(200, 700):
            log.append(make_record(i))
        log._send()
        os.kill(first, signal.SIGKILL)
        # (wait_durable gives up at once while no writer runs, as it does while the disk refuses
        # writes: the daemon answers, the records stay with it and are sent again)
        assert log.flush(timeout=30)
        assert log._proc.pid != first and log.restarts == 1
        assert log.healthy and log.write_failures == 1   # the death is counted
        assert "exited" in log.last_error
    finally:
        assert log.close()
    ids = [r[0] for r in _rows(path)]
    assert ids == [f"d-{i:08d}" for i in range(700)]
    assert verify([str(path)]).ok


def test_a_killed_daemon_leaves_every_handed_record_committed(tmp_path):
    path = tmp_path / "decisions.db"
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = {[os.getcwd(), os.path.dirname(__file__)]!r}
        from policy.audit.log_process import DecisionLogProcess
        from conftest import make_record
        log = DecisionLogProcess({str(path)!r})
        for i in range(500):
            log.append(make_record(i))
        log._send()   # handed over; no wait for the commit
        print(log._proc.pid, flush=True)
        import time; time.sleep(60)
    """)
    daemon = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    writer = int(daemon.stdout.readline())
    daemon.kill()
    daemon.wait()
    deadline = time.monotonic() + 20   # the writer finds the pipe closed, commits, exits
    while time.monotonic() < deadline:
        try:
            os.kill(writer, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the writer outlived its daemon")
    assert len(_rows(path)) == 500


def test_fail_closed_refuses_while_the_writer_lags_and_recovers(tmp_path):
    log = DecisionLogProcess(str(tmp_path / "decisions.db"), queue_max=5, on_overflow="fail_closed")
    try:
        os.kill(log._proc.pid, signal.SIGSTOP)   # a writer that cannot keep up
        for i in range(5):
            assert log.append(make_record(i))
        assert not log.has_room()
        assert log.append(make_record(5)) is False
        assert log.overflows == 1
        os.kill(log._proc.pid, signal.SIGCONT)
        assert log.wait_durable(log.mark(), timeout=10)
        assert log.has_room() and log.append(make_record(6))
    finally:
        assert log.close()


def test_a_second_writer_of_the_same_log_is_refused(tmp_path):
    path = tmp_path / "decisions.db"
    log = DecisionLogProcess(str(path))
    try:
        with pytest.raises(LogLockedError, match="another process"):
            DecisionLogProcess(str(path), lock_wait=0.3)
    finally:
        log.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"sync": "sometimes"}, "sync must be one of normal, full, not 'sometimes'"),
    ({"queue_max": 0}, "queue_max must be at least 1"),
])
def test_bad_options_are_refused_before_a_writer_starts(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as e:
        DecisionLogProcess(str(tmp_path / "decisions.db"), **kwargs)
    assert str(e.value) == message


def test_a_bad_record_is_refused_on_the_callers_side(tmp_path):
    log = DecisionLogProcess(str(tmp_path / "decisions.db"))
    try:
        with pytest.raises(ValueError, match="unknown decision-log fields"):
            log.append({**make_record(1), "colour": "red"})
        assert log.append(make_record(2)) and log.wait_durable(log.mark(), timeout=10)
    finally:
        assert log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.append(make_record(3))
