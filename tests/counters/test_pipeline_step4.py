"""Step 4 of the pipeline on every counter backend: what the daemon's Pipeline charges and keeps
for a request id, on a copy of the shipped rules (no gRPC; the e2e tests cover the wire)."""
from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest

from policy.api.v1 import policy_pb2 as pb
from policy.daemon.pipeline import Pipeline
from policy.daemon.runtime import Runtime
from policy.daemon.service import answer_bytes
from policy.submission import Submission

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE = "【云信科技】"
NUMBER = "13812345678"


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.fixture
def pipeline(tmp_path, store_spec):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    runtime = Runtime(str(rules), str(tmp_path / "data"))
    store = store_spec.open()
    for account in runtime.current().policy.accounts.values():
        if account.billing == "prepaid":
            store.set_opening_balance(account.id, account.balance)
    yield Pipeline(runtime, store)
    store.close()
    runtime.close()


def submit(pipeline, request_id, account, when, text=f"{SIGNATURE}您的验证码是123456，5分钟内有效",
           encoding="utf-16-be", msg_fmt=8, number=NUMBER, **kw) -> pb.EvaluateResponse:
    policy = pipeline.runtime.current().policy
    sub = Submission(request_id=request_id, account_id=account, frontend_id="tests",
                     src_id=policy.accounts[account].access_code, destinations=[number],
                     content=text.encode(encoding), msg_fmt=msg_fmt, **kw)
    decision = pipeline.evaluate(sub, now=at(when))
    return pb.EvaluateResponse.FromString(answer_bytes(decision))


def test_a_submit_refusal_is_kept_for_its_request_id(pipeline):
    # 900013 sends 08:00-20:00: refused with 16 just before, the retry of the same request id
    # just after gets the refusal back (the same decision), and is not charged
    first = submit(pipeline, "same-id", "900013", "2026-12-08T07:59:59.800+08:00")
    retry = submit(pipeline, "same-id", "900013", "2026-12-08T08:00:00.300+08:00")
    assert first.submit_result == 16 and not first.replayed
    assert retry.submit_result == 16 and retry.replayed
    assert retry.decision_id == first.decision_id
    fresh = submit(pipeline, "other-id", "900013", "2026-12-08T08:00:00.400+08:00")
    assert fresh.submit_result == 0 and fresh.recipients[0].action == pb.ACTION_ACCEPT
    # the accepted message was the first thing charged on this number's daily channel counter
    assert [c.value for c in fresh.counters if c.limit_id == "channel-number-daily"] == [0]


def test_same_text_in_two_encodings_is_the_same_content(pipeline):
    # 900014 may send UCS2 and GBK; give it the demo's same-content limit (5 per hour)
    path = Path(pipeline.runtime.rules_dir) / "limits.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        'accounts: ["900001"]\n    max: 5', 'accounts: ["900014"]\n    max: 5', 1), encoding="utf-8")
    assert pipeline.runtime.reload().ok
    text = "您的验证码是123456，5分钟内有效"   # 900014 has no signature check
    cucc = "13012345678"                       # routed to ch-cucc-short, which takes GBK
    actions = []
    for i in range(10):
        encoding, fmt = ("utf-16-be", 8) if i % 2 else ("gbk", 15)
        answer = submit(pipeline, f"r{i}", "900014", f"2026-12-08T10:00:{i:02d}+08:00", text=text,
                        encoding=encoding, msg_fmt=fmt, number=cucc)
        actions.append((answer.recipients[0].action, answer.recipients[0].code))
    assert actions == [(pb.ACTION_ACCEPT, "")] * 5 + [(pb.ACTION_REJECT, "MA:0042")] * 5


def test_with_fail_closed_a_decision_the_log_refuses_is_never_charged(pipeline, tmp_path):
    """log_overflow fail_closed: the log's slot is reserved before the charge. Threads racing
    for the last free slots must never get a charged decision refused (MA:0011) after all."""
    import os
    import signal
    import threading

    from policy.audit.log_process import DecisionLogProcess
    log = DecisionLogProcess(str(tmp_path / "decisions.db"), queue_max=6, on_overflow="fail_closed")
    os.kill(log._proc.pid, signal.SIGSTOP)   # a writer that cannot keep up: 6 slots, never freed
    pipeline.decision_log = log
    pipeline.counters.top_up("900002", 10_000)
    answers, lock = [], threading.Lock()

    def send(t: int) -> None:
        for i in range(15):
            a = submit(pipeline, f"t{t}-{i}", "900002", f"2026-12-08T10:00:{i:02d}+08:00",
                       number=f"1381234{t:02d}{i:02d}", fee_code="000000")
            with lock:
                answers.append((a.recipients[0].action, a.recipients[0].code))
    try:
        threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        accepted = sum(action == pb.ACTION_ACCEPT for action, _ in answers)
        assert len(answers) == 120 and accepted == 6
        assert {code for action, code in answers if action != pb.ACTION_ACCEPT} == {"MA:0011"}
        assert pipeline.counters.balance("900002") == 100 + 10_000 - 5 * accepted
    finally:
        os.kill(log._proc.pid, signal.SIGCONT)
        log.close()
