"""A call whose deadline passed while it waited for a worker is not decided: its caller has
already given up (the front-end answered Result 8), so counting it would spend the customer's
quota on a message that was refused, and deciding it would spend the daemon's time on an answer
nobody reads while it is behind."""
from __future__ import annotations

import time

import grpc
import pytest

from policy.api.v1 import policy_pb2 as pb
from tests.support.procs import DaemonProc

from .grpc_helpers import request


def test_a_call_that_expired_in_the_queue_counts_nothing(tmp_path):
    d = DaemonProc(tmp_path, env={"SMSPOLICY_WORKERS": "1"})
    try:
        # the only worker is busy with a large batch for a while
        busy = d.policy.EvaluateBatch.future(
            pb.EvaluateBatchRequest(requests=[request() for _ in range(3000)]), timeout=120)
        time.sleep(0.3)
        late = request()
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            d.policy.Evaluate(late, timeout=0.3)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert not busy.done(), "the batch ended before the call expired: the test proves nothing"
        assert len(busy.result().responses) == 3000
        assert time.monotonic() - started > 0.3
        again = d.policy.Evaluate(late, timeout=30)
        assert not again.replayed   # its first decision: the expired call was not decided
        batch = d.policy.EvaluateBatch(pb.EvaluateBatchRequest(requests=[late]), timeout=30)
        assert batch.responses[0].replayed   # as any retry of a decided request id
    finally:
        d.stop()
