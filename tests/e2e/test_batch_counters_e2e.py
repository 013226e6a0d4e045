"""EvaluateBatch and EvaluateStream charge their messages together (one journal commit with
exclusive SQLite, one pipelined round trip with Redis): still exact, idempotent and persistent."""
from __future__ import annotations

import pytest

from policy.api.v1 import policy_pb2 as pb
from tests.e2e.grpc_helpers import SIGNATURE, clear_of_the_hour, fresh_number, request
from tests.support.procs import DaemonProc, copy_rules
from tests.support.redis import start_redis_server

BACKENDS = ["sqlite-exclusive", "sqlite-shared", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def backend_daemon(request, tmp_path):
    extra, redis_proc = [], None
    if request.param == "redis":
        redis_proc, url = start_redis_server(tmp_path)
        extra = ["--counters", "redis", "--redis-url", url]
    d = DaemonProc(tmp_path / "d", rules_dir=copy_rules(tmp_path), extra=extra,
                   env={"SMSPOLICY_COUNTERS_SQLITE_MODE": request.param.removeprefix("sqlite-")}
                   if request.param.startswith("sqlite") else None)
    clear_of_the_hour()  # the tests' counts must not straddle the hourly window's reset
    yield d
    d.stop()
    if redis_proc is not None:
        redis_proc.kill()
        redis_proc.wait(10)


def codes(resp: pb.EvaluateResponse) -> list[str]:
    return [r.code for r in resp.recipients]


def test_a_batch_on_one_counter_accepts_exactly_the_limit_and_replays_on_retry(backend_daemon):
    d = backend_daemon
    number, text = fresh_number(), f"{SIGNATURE}您的验证码是515151，5分钟内有效"
    reqs = [request(dests=[number], text=text) for _ in range(8)]  # same content: a limit of 5
    first = d.policy.EvaluateBatch(pb.EvaluateBatchRequest(requests=reqs), timeout=20).responses
    assert [codes(r) for r in first] == [[""]] * 5 + [["MA:0042"]] * 3
    assert first[4].counters and not any(r.replayed for r in first)
    # the same batch again (a front-end retrying after a lost answer): same answers, no counting
    again = d.policy.EvaluateBatch(pb.EvaluateBatchRequest(requests=reqs), timeout=20).responses
    assert all(r.replayed for r in again)
    assert [r.decision_id for r in again] == [r.decision_id for r in first]
    assert [codes(r) for r in again] == [codes(r) for r in first]
    # a batch mixing a retry with new messages: the retry replays, the new ones see the counts
    mixed = [reqs[0], request(dests=[number], text=text)]
    out = d.policy.EvaluateBatch(pb.EvaluateBatchRequest(requests=mixed), timeout=20).responses
    assert out[0].replayed and codes(out[0]) == [""]
    assert not out[1].replayed and codes(out[1]) == ["MA:0042"]


def test_a_stream_counts_like_single_calls_and_survives_a_restart(backend_daemon):
    d = backend_daemon
    number, text = fresh_number(), f"{SIGNATURE}您的验证码是626262，5分钟内有效"
    reqs = [request(dests=[number], text=text) for _ in range(7)]
    out = list(d.policy.EvaluateStream(iter(reqs), timeout=20))
    assert [codes(r) for r in out] == [[""]] * 5 + [["MA:0042"]] * 2
    d.restart()  # what was answered was committed: the counts and the answers are still there
    again = list(d.policy.EvaluateStream(iter(reqs[:2] + [request(dests=[number], text=text)]), timeout=20))
    assert again[0].replayed and again[1].replayed
    assert again[0].decision_id == out[0].decision_id
    assert codes(again[2]) == ["MA:0042"] and not again[2].replayed
