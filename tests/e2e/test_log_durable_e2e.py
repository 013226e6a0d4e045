"""A daemon killed -9 right after answering keeps the log record of every answered decision.

Found by the soak (tests/soak): the log writer commits every 50 ms, the answers went out
before, and a kill -9 lost the records of messages the customers had been told were
accepted. Now an answer waits for its record's commit (one commit per EvaluateBatch).
"""
from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from policy.api.v1 import policy_pb2 as pb
from tests.support.procs import DaemonProc

from .grpc_helpers import request


@pytest.fixture(params=["process", "thread"])
def fresh_daemon(request, tmp_path):
    """With each decision-log writer (log_writer): a child process, or a thread of the daemon."""
    d = DaemonProc(tmp_path, env={"SMSPOLICY_LOG_WRITER": request.param})
    yield d
    d.stop()


def test_every_answered_decision_survives_kill_9(fresh_daemon):
    reqs = [request() for _ in range(60)]
    batch = pb.EvaluateBatchRequest(requests=[request() for _ in range(20)])
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: fresh_daemon.policy.Evaluate(r, timeout=10), reqs))
    batch_answer = fresh_daemon.policy.EvaluateBatch(batch, timeout=10)
    fresh_daemon.proc.kill()   # SIGKILL at once: nothing gets flushed on the way out
    assert all(a.submit_result == 0 for a in answers)
    assert len(batch_answer.responses) == 20
    (path,) = fresh_daemon.data_dir.glob("decisions*.db")
    logged = {row[0] for row in sqlite3.connect(str(path)).execute(
        "SELECT request_id FROM decisions")}
    missing = {r.request_id for r in reqs + list(batch.requests)} - logged
    assert not missing, f"{len(missing)} answered decisions not in the log"
