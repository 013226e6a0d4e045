"""`smspolicy audit verify|query` as an operator runs them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import BASE_TS, make_record, raw, write

ROOT = Path(__file__).resolve().parents[2]


def smspolicy(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": "UTC"}
    return subprocess.run([sys.executable, "-m", "policy", "audit", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


@pytest.fixture
def logs(tmp_path):
    write(tmp_path / "a.db", [make_record(i, account="900001") for i in range(0, 6, 2)])
    write(tmp_path / "b.db", [make_record(i, account="900002", code="MA:0023", rule="customer-blacklist")
                              for i in range(1, 6, 2)])
    return tmp_path


def test_verify_ok(logs):
    res = smspolicy("verify", logs / "*.db")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: 6 records in 2 file(s), 2 chain(s)" in res.stdout


def test_verify_reports_the_first_problem(logs):
    raw(logs / "b.db").execute("UPDATE decisions SET codes = '0' WHERE seq = 2")
    res = smspolicy("verify", logs / "a.db", logs / "b.db")
    assert res.returncode == 1
    assert f"FAILED: {logs / 'b.db'}: seq 2: edited:" in res.stdout


def test_verify_missing_file_is_a_usage_error(tmp_path):
    res = smspolicy("verify", tmp_path / "nothing.db")
    assert res.returncode == 2
    assert "does not exist" in res.stderr


def test_query_json_lines(logs):
    res = smspolicy("query", logs / "*.db", "--code", "MA:0023", "--json")
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["decision_id"] for r in records] == ["d-00000001", "d-00000003", "d-00000005"]
    assert records[0]["results"]["recipients"][0]["code"] == "MA:0023"


def test_query_table_with_iso_and_epoch_times(logs):
    res = smspolicy("query", logs / "a.db", logs / "b.db", "--since", "2024-05-01T00:00:01Z",
                    "--until", BASE_TS + 4)
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    assert header.split() == ["TIME", "SEQ", "ACCOUNT", "SRC", "DESTINATIONS", "CODES", "RULES",
                              "SHADOW", "VERSION"]
    assert [row.split()[0] for row in rows] == ["2024-05-01T00:00:01+00:00", "2024-05-01T00:00:02+00:00",
                                                "2024-05-01T00:00:03+00:00"]
    assert "13800138000 +1" in rows[0] and "customer-blacklist" in rows[0]


def test_query_filters_reach_the_query(logs):
    res = smspolicy("query", logs / "*.db", "--account", "900001", "--number", "+8613800138000",
                    "--version", "v-a", "--limit", "2", "--json")
    assert [json.loads(line)["decision_id"] for line in res.stdout.splitlines()] == ["d-00000000", "d-00000002"]
    res = smspolicy("query", logs / "*.db", "--rule", "customer-blacklist", "--shadow", "--json")
    assert res.stdout == ""


def test_query_bad_time(logs):
    res = smspolicy("query", logs / "a.db", "--since", "last tuesday")
    assert res.returncode == 2
    assert "neither epoch seconds nor ISO 8601" in res.stderr
