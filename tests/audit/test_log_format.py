"""Format /2 of the decision log next to format /1: what is stored is what is hashed, the
pipeline's facts come back exactly as logged, the bulk-filled indexes and the fact key lists are
covered by verify, and files of the old format (one written by the old writer is kept in
fixtures/) still verify, read and continue."""
from __future__ import annotations

import datetime
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from policy.audit import decision_log
from policy.audit.decision_log import DecisionLog
from policy.audit.files import rotated_files
from policy.audit.query import query
from policy.audit.schema import FORMAT_V1, FORMAT_V2
from policy.audit.verify import EDITED, verify

from . import fixture_records
from .conftest import file_format, make_record, raw, write

FIXTURE = Path(__file__).parent / "fixtures" / "v1-decisions.db"
FIXTURE_HEAD = "511d2c2e805f7f1eaed9ca34073f74602457f04e6c09a8fdf79a689a17654756"


def _pipeline_record(i: int, recipients: list) -> dict:
    r = make_record(i)
    r["facts"] = {"message": {"_m": 1, "account__id": "900001", "message__segments": 1,
                              "message__keyword_groups": ["fraud", "loan"], "message__content": "【测试】x"},
                  "recipients": recipients}
    return r


def _json_view(value):
    """What a JSON column gives back for `value` (tuples as lists, int keys as strings)."""
    return json.loads(json.dumps(value, default=decision_log._jsonable))


def test_pipeline_facts_come_back_exactly(log_path):
    a = {"recipient__number": "13800138000", "recipient__valid": True, "recipient__lists": ["vip"],
         "route__channel": "ch-1"}
    b = {"recipient__number": "13900139000", "recipient__valid": False, "recipient__reason": "segment"}
    records = [_pipeline_record(1, [a, None, b]), _pipeline_record(2, [b]), _pipeline_record(3, [])]
    expected = [_json_view(r["facts"]) for r in records]
    write(log_path, [dict(r) for r in records])
    got = [r["facts"] for r in query([str(log_path)])]
    assert got == expected
    # key order too: replay and explain print facts in the order the pipeline made them
    assert [list(f["message"]) for f in got] == [list(f["message"]) for f in expected]
    assert list(got[0]["recipients"][2]) == list(b)
    conn = raw(log_path)
    assert conn.execute("SELECT count(*) FROM fact_keys").fetchone()[0] == 3   # message, a, b
    assert conn.execute("SELECT facts FROM decisions WHERE seq = 1").fetchone()[0].startswith('["p",')
    assert verify([str(log_path)]).ok


@pytest.mark.parametrize("facts", [
    {"account__id": "900001", "recipients": [{"n": 1}]},       # not the pipeline's shape
    {"message": {1: "int key"}, "recipients": []},             # JSON makes the key a string
    {"message": {"tags": {"b", "a"}, "raw": b"\x00\xff", "when": datetime.date(2024, 5, 1)},
     "recipients": [("t", "u")]},                              # a recipient that is not a dict
    {"big": 2 ** 70, "nested": {"deep": [1.5, None, True]}},   # past orjson's 64-bit ints
    None,
])
def test_other_facts_read_back_as_in_format_1(tmp_path, facts):
    got = {}
    for fmt in (FORMAT_V1, FORMAT_V2):
        path = tmp_path / f"{fmt[-1]}.db"
        write(path, [{**make_record(1), "facts": facts}], log_format=fmt)
        (got[fmt],) = [r["facts"] for r in query([str(path)])]
        assert verify([str(path)]).ok
    assert got[FORMAT_V2] == got[FORMAT_V1]


def test_lone_surrogates_in_facts_do_not_block_the_log(log_path):
    write(log_path, [_pipeline_record(1, [{"recipient__number": "13800138000", "note": "bad \ud83d x"}])])
    (got,) = query([str(log_path)])
    assert got["facts"]["recipients"][0]["note"].startswith("bad ")
    assert verify([str(log_path)]).ok


def test_stored_bytes_are_hashed_not_their_meaning(log_path):
    write(log_path, [make_record(i) for i in range(3)])
    # same JSON value, other bytes: a verifier that re-encoded the value would not see it
    raw(log_path).execute("UPDATE decisions SET results = replace(results, ',', ', ') WHERE seq = 2")
    report = verify([str(log_path)])
    assert (report.problem.seq, report.problem.kind) == (2, EDITED)


def test_an_altered_fact_key_list_is_reported(log_path):
    write(log_path, [_pipeline_record(i, [{"recipient__number": "13800138000", "route__channel": "c"}])
                     for i in range(3)])
    conn = raw(log_path)
    conn.execute("UPDATE fact_keys SET keys = replace(keys, 'route__channel', 'route__channe1')")
    report = verify([str(log_path)])
    assert not report.ok and report.problem.kind == EDITED and "fact key list" in report.problem.message


def test_a_deleted_fact_key_list_is_reported_and_reading_says_why(log_path):
    write(log_path, [_pipeline_record(i, [{"recipient__number": "13800138000"}]) for i in range(3)])
    conn = raw(log_path)
    conn.execute("DELETE FROM fact_keys WHERE keys LIKE '%recipient__number%'")
    report = verify([str(log_path)])
    assert (report.problem.seq, report.problem.kind) == (1, EDITED)
    with pytest.raises(ValueError, match="fact_keys"):
        list(query([str(log_path)]))


@pytest.fixture
def indexed(log_path, monkeypatch):
    """A /2 log of 6 records, the first 4 in the account and number indexes, 2 in the tail."""
    monkeypatch.setattr(decision_log, "INDEX_EVERY", 4)
    write(log_path, [make_record(i, account=f"90000{i % 2}") for i in range(4)])
    write(log_path, [make_record(i, account=f"90000{i % 2}") for i in range(4, 6)])
    assert raw(log_path).execute("SELECT decisions_id FROM index_state").fetchone()[0] == 4
    return log_path


def test_indexed_and_tail_records_are_both_found(indexed):
    assert [r["seq"] for r in query([str(indexed)], account="900001")] == [2, 4, 6]
    assert [r["seq"] for r in query([str(indexed)], number="+8613900139000")] == [1, 2, 3, 4, 5, 6]
    assert [r["seq"] for r in query([str(indexed)], account="900000", limit=2)] == [1, 3]
    assert verify([str(indexed)]).ok


@pytest.mark.parametrize("tamper, message", [
    ("DELETE FROM account_index WHERE seq = 2", "account index (account_index) is missing seq 2"),
    ("INSERT INTO account_index VALUES ('900666', 0, 3, 3)", "account index (account_index) lists seq 3"),
    ("DELETE FROM number_index WHERE seq = 3", "number index (number_index) is missing seq 3"),
    ("INSERT INTO number_index VALUES ('13700137000', 4)", "number index (number_index) lists seq 4"),
    ("UPDATE index_state SET decisions_id = 2", "account index (account_index) lists seq 3"),
])
def test_a_tampered_index_is_reported(indexed, tamper, message):
    raw(indexed).execute(tamper)
    report = verify([str(indexed)])
    assert not report.ok and report.problem.kind == EDITED
    assert message in report.problem.message


def test_the_old_writers_file_verifies_and_reads(tmp_path):
    old = tmp_path / "decisions.db"   # a copy: reading a WAL file leaves -shm/-wal beside it
    shutil.copy(FIXTURE, old)
    report = verify([str(old)])
    assert report.ok and report.records == 4 and report.chains[0].last_hash == FIXTURE_HEAD
    got = list(query([str(old)]))
    for record, want in zip(got, fixture_records.records(), strict=True):
        for key in ("decision_id", "ts", "account_id", "destinations", "content", "facts", "counters",
                    "matches", "results", "rules_version"):
            assert record[key] == _json_view(want[key]), key
    assert [r["seq"] for r in query([str(old)], account="900001")] == [2, 4]
    assert [r["seq"] for r in query([str(old)], number="13900139000")] == [2, 4]


def test_an_old_file_is_continued_in_its_format_and_rotates_into_the_new_one(tmp_path):
    path = tmp_path / "decisions.db"
    shutil.copy(FIXTURE, path)
    write(path, [make_record(i) for i in range(10, 13)])
    assert file_format(path) == FORMAT_V1                        # a file keeps its format
    write(path, [make_record(i) for i in range(13, 20)], rotate_bytes=1)
    (old,) = [r for r in rotated_files(str(path)) if r.first_seq == 1]
    assert file_format(old.path) == FORMAT_V1
    assert file_format(path) == FORMAT_V2
    logs = [str(tmp_path / "decisions*.db")]
    report = verify(logs)
    assert report.ok and report.records == 4 + 3 + 7
    assert [r["seq"] for r in query(logs)] == list(range(1, 15))


def test_new_files_are_format_2_and_format_1_can_still_be_asked_for(tmp_path):
    write(tmp_path / "new.db", [make_record(1)])
    write(tmp_path / "old.db", [make_record(1)], log_format=FORMAT_V1)
    assert file_format(tmp_path / "new.db") == FORMAT_V2
    assert file_format(tmp_path / "old.db") == FORMAT_V1
    with pytest.raises(ValueError, match="log_format"):
        DecisionLog(str(tmp_path / "x.db"), log_format="smspolicy-decision-log/9")


def test_a_file_of_an_unknown_format_is_refused(tmp_path):
    path = tmp_path / "future.db"
    write(path, [make_record(1)])
    raw(path).execute("UPDATE meta SET value = 'smspolicy-decision-log/9' WHERE key = 'format'")
    with pytest.raises(ValueError, match="format 'smspolicy-decision-log/9'"):
        DecisionLog(str(path))   # a newer writer's file: not written by one that cannot read it
    assert sqlite3.connect(str(path)).execute("SELECT count(*) FROM decisions").fetchone()[0] == 1
