"""Every query filter, alone and combined, over the logs of two daemons."""
from __future__ import annotations

import pytest

from policy.audit.query import query

from .conftest import BASE_TS, make_record, write


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
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
    write(d / "a.db", a)
    write(d / "b.db", b)
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
