"""Limit codes, balance, idempotency and fail-closed behaviour, through real daemons."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest

from policy.api.v1 import policy_pb2 as pb
from tests.e2e.grpc_helpers import SIGNATURE, eventually, fresh_number, one, request
from tests.support.procs import REPO, DaemonProc, copy_rules
from tests.support.redis import daemons_on_redis

TEST_LIMITS = """
limits:
  - {id: t-account-daily, scope: account, accounts: ["900011"], max: 3, window: day}
  - {id: t-channel-minute, scope: channel, channels: [ch-cucc], max: 3, window: minute}
  - {id: t-channel-number, scope: channel_number, channels: [ch-ctcc], max: 2, window: day}
  - {id: t-channel-content, scope: channel_content, channels: [ch-ctcc], max: 3, window: hour}
"""


def send(daemon, **kw) -> pb.RecipientDecision:
    return one(daemon.policy.Evaluate(request(**kw), timeout=10))


def test_per_number_limit_gives_MA_0022(daemon):
    number = fresh_number()
    codes = [send(daemon, dests=[number]).code for _ in range(21)]  # a different code each time
    assert codes[:20] == [""] * 20 and codes[20] == "MA:0022"


def test_same_content_to_the_same_number_gives_MA_0042(daemon):
    number, text = fresh_number(), f"{SIGNATURE}您的验证码是777777，5分钟内有效"
    decisions = [send(daemon, dests=[number], text=text) for _ in range(6)]
    assert [d.code for d in decisions] == [""] * 5 + ["MA:0042"]
    assert decisions[5].rule_id == "demo-same-content-hourly"


def test_a_rejected_message_consumes_no_quota(daemon):
    number, text = fresh_number(), f"{SIGNATURE}您的验证码是888888，5分钟内有效"
    for _ in range(3):  # refused by a rule before limits: not counted
        assert send(daemon, dests=[number], text=text + "网上赌场").code == "MA:0002"
    assert [send(daemon, dests=[number], text=text).code for _ in range(6)] == [""] * 5 + ["MA:0042"]


def test_a_retried_request_id_is_answered_again_and_counted_once(daemon):
    number, text = fresh_number(), f"{SIGNATURE}您的验证码是999999，5分钟内有效"
    req = request(dests=[number], text=text)
    first = daemon.policy.Evaluate(req, timeout=10)
    for _ in range(10):
        again = daemon.policy.Evaluate(req, timeout=10)
        assert again.replayed and again.decision_id == first.decision_id
        assert again.recipients[0].action == pb.ACTION_ACCEPT
    # the limit of 5 same-content messages still has 4 left: the retries counted nothing
    assert [send(daemon, dests=[number], text=text).code for _ in range(5)] == [""] * 4 + ["MA:0042"]


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    work = tmp_path_factory.mktemp("limited")
    rules = copy_rules(work)
    (rules / "test-limits.yaml").write_text(TEST_LIMITS, encoding="utf-8")
    d = DaemonProc(work, rules_dir=rules)
    yield d
    d.stop()


def test_account_daily_volume_gives_MA_0041(limited):
    codes = [send(limited, account="900011", src_id="106900011", dests=[fresh_number()]).code for _ in range(4)]
    assert codes == ["", "", "", "MA:0041"]


def test_channel_volume_gives_MA_0035(limited):
    decisions = [send(limited, dests=[f"1300000{i:04d}"]) for i in range(4)]
    assert [(d.code, d.channel_id) for d in decisions][-1] == ("MA:0035", "ch-cucc")
    assert [d.code for d in decisions[:3]] == ["", "", ""]


def test_channel_per_number_gives_MA_0038(limited):
    codes = [send(limited, dests=["13300001111"]).code for _ in range(3)]
    assert codes == ["", "", "MA:0038"]


def test_channel_same_content_to_different_numbers_gives_MA_0043(limited):
    text = f"{SIGNATURE}今晚八点系统维护，请提前保存数据"
    codes = [send(limited, dests=[f"1330000{i:04d}"], text=text).code for i in range(2000, 2004)]
    assert codes == ["", "", "", "MA:0043"]


def test_concurrent_requests_never_overshoot(limited):
    number = "13300005555"  # channel_number limit 2 on ch-ctcc
    results = []

    def worker():
        results.append(send(limited, dests=[number]).code)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [""] * 2 + ["MA:0038"] * 10


def test_idempotency_survives_a_restart(tmp_path):
    d = DaemonProc(tmp_path)
    try:
        req = request()
        first = d.policy.Evaluate(req, timeout=10)
        d.restart()
        again = d.policy.Evaluate(req, timeout=10)
        assert again.replayed and again.decision_id == first.decision_id
    finally:
        d.stop()


def test_decision_log_unwritable_fails_closed_with_MA_0011(tmp_path):
    d = DaemonProc(tmp_path, env={"SMSPOLICY_LOG_OVERFLOW": "fail_closed"})
    try:
        assert send(d).action == pb.ACTION_ACCEPT
        # the disk refuses writes: the log file and its WAL become immutable (not the -shm
        # file, which SQLite memory-maps: that would be a bus error, not a write error)
        frozen = [p for p in d.data_dir.glob("decisions-*.db*") if not p.name.endswith("-shm")]
        assert frozen
        for f in frozen:
            subprocess.run(["chattr", "+i", str(f)], check=True)
        try:
            # the writer notices on its next batch (every 50 ms); from then on every decision
            # fails closed until the disk takes writes again
            deadline, r = time.monotonic() + 10, None
            while time.monotonic() < deadline:
                r = send(d)
                if r.code == "MA:0011":
                    break
                time.sleep(0.05)
            assert r.code == "MA:0011"
            assert r.reason.startswith("decision log unavailable")
        finally:
            for f in frozen:
                subprocess.run(["chattr", "-i", str(f)], check=False)
    finally:
        d.stop()


def test_two_daemons_share_counters_and_the_api_blacklist_in_redis(tmp_path):
    with daemons_on_redis(tmp_path) as (proc, daemons):
        number, text = fresh_number(), f"{SIGNATURE}您的验证码是424242，5分钟内有效"
        codes = [send(daemons[i % 2], dests=[number], text=text).code for i in range(6)]
        assert codes == [""] * 5 + ["MA:0042"]  # one limit of 5, counted across both daemons
        # so is the API blacklist: listed through one daemon, at once there and in the other
        # within its refresh (watch_interval, 0.2 s here); lifted through the other, in both
        listed = fresh_number()
        daemons[0].admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(add=[listed]), timeout=5)
        assert send(daemons[0], dests=[listed]).code == "MA:0039"
        assert eventually(lambda: send(daemons[1], dests=[listed]).code == "MA:0039")
        daemons[1].admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(remove=[listed]), timeout=5)
        assert send(daemons[1], dests=[listed]).code == ""
        assert eventually(lambda: send(daemons[0], dests=[listed]).code == "")
        # the counter store gone: no unchecked sending, the front-end will answer flow control (8)
        proc.kill()
        proc.wait(10)
        with pytest.raises(grpc.RpcError) as e:
            send(daemons[0])
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "counter store unavailable" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            daemons[1].admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(add=[fresh_number()]), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "API blacklist store unavailable" in e.value.details()


def test_a_daemon_whose_redis_does_not_answer_says_so_and_does_not_start(tmp_path):
    with socket.socket() as s:   # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "policy", "serve", "--listen", "127.0.0.1:0", "--data", str(tmp_path),
         "--counters", "redis", "--redis-url", f"redis://:secret@127.0.0.1:{port}/0"],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1
    assert f"cannot load the charge script into Redis at redis://127.0.0.1:{port}/0" in proc.stdout
    assert proc.stdout.rstrip().endswith("not starting")
    assert "Traceback" not in proc.stdout + proc.stderr and "secret" not in proc.stdout + proc.stderr
