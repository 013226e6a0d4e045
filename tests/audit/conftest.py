"""Decision-log fixtures: realistic records and small helpers to write and tamper with logs."""
from __future__ import annotations

import sqlite3

import pytest

from policy.audit.decision_log import DecisionLog
from policy.audit.schema import FORMAT_V1, FORMAT_V2

BASE_TS = 1_714_521_600.0  # 2024-05-01T00:00:00Z


def make_record(i: int, account: str = "900001", destinations=("13800138000", "13900139000"),
                code: str | None = "MA:0001", rule: str | None = "global-blacklist",
                shadow: str | None = None, version: str = "v-aaaa", ts: float | None = None) -> dict:
    recipients = [
        {"destination": d, "action": "reject" if (code and n == 0) else "accept",
         "code": code if n == 0 else None, "rule_id": rule if n == 0 else None,
         "channel_id": None if (code and n == 0) else "cmcc-01"}
        for n, d in enumerate(destinations)]
    matches = ([{"rule_id": rule, "code": code, "priority": 900, "mode": "enforce", "recipient_index": 0}]
               if rule else [])
    if shadow:
        matches.append({"rule_id": shadow, "code": "MA:0002", "priority": 100, "mode": "shadow",
                        "recipient_index": 0})
    return {
        "decision_id": f"d-{i:08d}",
        "ts": BASE_TS + i if ts is None else ts,
        "request_id": f"req-{i}",
        "frontend_id": "gw-1",
        "account_id": account,
        "src_id": "1069000123",
        "destinations": list(destinations),
        "content": f"【测试】您的验证码是{100000 + i}，5分钟内有效，请勿泄露给他人。",
        "msg_fmt": 8,
        "facts": {"account__id": account, "content__length": 30, "signature__registered": True,
                  "keyword__hits": ["验证码"], "recipients": [{"number__carrier": "cmcc"}] * len(destinations)},
        "counters": {"account_number:day": 3, "account:day": 1200},
        "rules_version": version,
        "matches": matches,
        "results": {"submit_result": 0, "submit_rule_id": None, "recipients": recipients},
    }


def write(path, records, **kwargs) -> DecisionLog:
    log = DecisionLog(str(path), **kwargs)
    for r in records:
        assert log.append(r)
    assert log.flush(10)
    log.close()
    return log


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "decisions.db"


@pytest.fixture(params=[FORMAT_V2, FORMAT_V1], ids=["v2", "v1"])
def chain10(log_path, request):
    """A closed log of 10 records (seq 1..10), in the current format and in the old one (files
    written before format /2 must still verify and read)."""
    write(log_path, [make_record(i) for i in range(10)], log_format=request.param)
    return log_path


def file_format(path) -> str:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0]
    finally:
        conn.close()


def raw(path) -> sqlite3.Connection:
    """A plain read-write connection, as a tamperer would open the file."""
    return sqlite3.connect(str(path), isolation_level=None)
