"""Batches decided by several threads at once (gRPC worker threads) get the answers they get one
at a time: Pipeline.evaluate_batch serializes its steps 1-3 with a lock, which must neither
deadlock nor mix up the messages of concurrent batches."""
from __future__ import annotations

import threading
from pathlib import Path

from policy.daemon.pipeline import Pipeline
from policy.daemon.runtime import Runtime
from policy.submission import Submission

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE = "【云信科技】"
TEXTS = ("你好，您的验证码是123456", "本店大促，回复TD退订", "加微信领取赌博彩金", "", "会议改到下午三点")


def _subs(tag: str, n: int) -> list[Submission]:
    return [Submission.from_dict({
        "request_id": f"{tag}-{i}", "account_id": "900001", "src_id": "106900001",
        "destinations": [f"139{i % 97:08d}", f"+86150{i % 89:08d}"][: 1 + i % 2],
        "content": SIGNATURE + TEXTS[i % len(TEXTS)], "msg_fmt": 8}) for i in range(n)]


def _answer(d) -> tuple:
    return (d.submit_result, d.submit_rule_id,
            [(r.normalized, r.action, r.code, r.rule_id, r.channel_id) for r in d.recipients],
            [(m.rule_id, m.recipient_index) for m in d.matches])


def test_concurrent_batches_match_sequential(tmp_path):
    runtime = Runtime(str(ROOT / "rules"), str(tmp_path))
    try:
        pipeline = Pipeline(runtime)
        now = 1_770_000_000.0
        batches = [_subs(f"t{k}", 60) for k in range(4)]
        expected = [[_answer(d) for d in pipeline.evaluate_batch(b, now)] for b in batches]
        got: dict[int, list] = {}
        errors: list[BaseException] = []

        def run(k: int) -> None:
            try:
                for _ in range(5):
                    got.setdefault(k, []).append([_answer(d) for d in pipeline.evaluate_batch(batches[k], now)])
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a batch thread hung"
        assert not errors, errors
        for k in range(4):
            assert len(got[k]) == 5
            assert all(answers == expected[k] for answers in got[k])
        assert any(a[0] or any(r[1] != "accept" for r in a[2]) for b in expected for a in b), \
            "the sample should include refusals, or the comparison proves little"
        assert not pipeline._steps_lock.locked()
    finally:
        runtime.close()
