"""Every query filter, alone and combined, over the logs of two daemons: in format /1, and in
format /2 with the account and number indexes not filled yet (every record in the tail the
queries search apart), filled for part of a file, and filled for all of it."""
from __future__ import annotations

import pytest

from policy.audit import decision_log
from policy.audit.query import query
from policy.audit.schema import FORMAT_V1, FORMAT_V2

from .conftest import BASE_TS, make_record, raw, write

VARIANTS = {"v1": (FORMAT_V1, None), "v2-tail": (FORMAT_V2, None), "v2-mixed": (FORMAT_V2, 3),
            "v2-indexed": (FORMAT_V2, 1)}


@pytest.fixture(scope="module", params=list(VARIANTS))
def logs(tmp_path_factory, request):
    fmt, every = VARIANTS[request.param]
    d = tmp_path_factory.mktemp("q")
    a = [  # daemon A: even seconds
        make_record(0, account="900001", code="MA:0001", rule="global-blacklist", version="v-1111"),
        make_record(2, account="900002", destinations=("13700137000",), code=None, rule=None, version="v-1111"),
        make_record(4, account="900001", code="MA:0023", rule="customer-blacklist", shadow="new-keywords",
                    version="v-2222"),
        make_record(6, account="900003", destinations=("13800138000",), code="MA:0033", rule="region-block",
                    version="v-2222"),
    ]
    b = [  # daemon B: odd seconds
        make_record(1, account="900002", destinations=("13800138000",), code="MA:0001", rule="global-blacklist",
                    version="v-1111"),
        make_record(3, account="900001", destinations=("13600136000",), code=None, rule=None,
                    shadow="new-keywords", version="v-2222"),
        make_record(5, account="900002", code="MA:0022", rule="per-number-limit", version="v-2222"),
    ]
    saved = decision_log.INDEX_EVERY
    decision_log.INDEX_EVERY = every or 10**9
    try:
        for path, records in ((d / "a.db", a), (d / "b.db", b)):
            write(path, records[:3], log_format=fmt)   # each write() is a daemon run
            write(path, records[3:], log_format=fmt)
    finally:
        decision_log.INDEX_EVERY = saved
    if fmt == FORMAT_V2:   # the variant is what it says: records indexed, and in the tail
        indexed = raw(d / "a.db").execute("SELECT decisions_id FROM index_state").fetchone()[0]
        assert indexed == {None: 0, 3: 3, 1: 4}[every]
    return [str(d / "a.db"), str(d / "b.db")]


def _ids(records) -> list[int]:
    return [int(r["decision_id"][2:]) for r in records]


def test_everything_in_time_order_across_logs(logs):
    assert _ids(query(logs)) == [0, 1, 2, 3, 4, 5, 6]


def test_by_account(logs):
    assert _ids(query(logs, account="900001")) == [0, 3, 4]


def test_by_number_with_or_without_country_code(logs):
    assert _ids(query(logs, number="13800138000")) == [0, 1, 4, 5, 6]
    assert _ids(query(logs, number="+8613700137000")) == [2]
    assert _ids(query(logs, number="008613600136000")) == [3]
    assert _ids(query(logs, number="13000000000")) == []


def test_by_code(logs):
    assert _ids(query(logs, code="MA:0001")) == [0, 1]
    assert _ids(query(logs, code="MA:000")) == []          # whole codes only
    assert _ids(query(logs, code="0")) == [0, 1, 2, 3, 4, 5, 6]


def test_by_rule_includes_shadow_matches(logs):
    assert _ids(query(logs, rule="global-blacklist")) == [0, 1]
    assert _ids(query(logs, rule="new-keywords")) == [3, 4]


def test_shadow_only(logs):
    assert _ids(query(logs, shadow_only=True)) == [3, 4]
    assert _ids(query(logs, shadow_only=True, rule="global-blacklist")) == []
    assert _ids(query(logs, shadow_only=True, rule="new-keywords", account="900002")) == []


def test_by_time_range(logs):
    assert _ids(query(logs, since=BASE_TS + 2, until=BASE_TS + 5)) == [2, 3, 4]
    assert _ids(query(logs, since=BASE_TS + 6)) == [6]


def test_by_version_and_prefix(logs):
    assert _ids(query(logs, version="v-1111")) == [0, 1, 2]
    assert _ids(query(logs, version="v-2")) == [3, 4, 5, 6]


def test_combined_and_limited(logs):
    assert _ids(query(logs, account="900002", version="v-2222")) == [5]
    assert _ids(query(logs, limit=3)) == [0, 1, 2]
    assert _ids(query(logs, code="MA:0001", limit=1)) == [0]


def test_records_come_back_decoded(logs):
    r = next(iter(query(logs, account="900003")))
    assert r["destinations"] == ["13800138000"]
    assert r["matches"][0]["rule_id"] == "region-block"
    assert r["results"]["recipients"][0]["code"] == "MA:0033"
    assert isinstance(r["facts"], dict) and isinstance(r["ts"], float)


def test_bad_paths_fail_at_call_time(tmp_path):
    with pytest.raises(FileNotFoundError):
        query([str(tmp_path / "missing.db")])
    with pytest.raises(ValueError):
        query([])
