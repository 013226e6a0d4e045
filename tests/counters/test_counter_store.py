"""Charge semantics, run against both backends (see conftest.py)."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis

from policy.counters import LimitPlan, RecipientCharge, RedisCounterStore, make_store
from policy.counters import sqlite_store
from policy.rules.model import Limit

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 3, 15, 10, 0, 0, tzinfo=SH)
N1, N2, N3 = "13800000001", "13800000002", "13800000003"


def rc(plan, index=0, number=N1, content="h1", segments=1, now=T0, account="900001", channel="ch1"):
    return RecipientCharge(index, plan.increments(account, channel, number, content, segments, now), segments)


def charge(store, rid, recipients, now=T0, debit=None, price=5):
    return store.charge(rid, recipients, debit, price, now.timestamp())


def key_of(plan, limit_id, **kw):
    return next(i.key for i in rc(plan, **kw).increments if i.limit_id == limit_id)


# per scope: fields that vary while staying on the same counter, and a change that leaves it
SCOPES = [
    ("account_number", "MA:0022", [dict(content="h2"), dict(channel="ch2")], dict(number=N2)),
    ("account", "MA:0041", [dict(number=N2), dict(content="h2", number=N3)], dict(account="900002")),
    ("account_number_content", "MA:0042", [dict(channel="ch2"), dict()], dict(content="h2")),
    ("channel", "MA:0035", [dict(number=N2, account="900002"), dict(content="h3")], dict(channel="ch2")),
    ("channel_number", "MA:0038", [dict(account="900002"), dict(content="h2")], dict(number=N2)),
    ("channel_content", "MA:0043", [dict(number=N2), dict(number=N3, account="900002")], dict(content="h2")),
]


@pytest.mark.parametrize("scope, code, same_counter, other_counter", SCOPES, ids=[s[0] for s in SCOPES])
def test_each_scope_refuses_with_its_code(store, scope, code, same_counter, other_counter):
    plan = LimitPlan([Limit(id="lim", scope=scope, max=2, window="day")])
    assert charge(store, "r1", [rc(plan)]).ok_indexes == [0]
    assert charge(store, "r2", [rc(plan, **same_counter[0])]).ok_indexes == [0]
    third = charge(store, "r3", [rc(plan, **same_counter[1])])
    assert third.ok_indexes == [] and third.rejected == {0: (code, "lim")}
    assert third.values == [(key_of(plan, "lim"), 2, 2, "lim")]
    assert charge(store, "r4", [rc(plan, **other_counter)]).ok_indexes == [0]


def test_a_reload_that_changes_max_keeps_the_counts(store):
    before = LimitPlan([Limit(id="num", scope="account_number", max=2, window="day")])
    after = LimitPlan([Limit(id="num", scope="account_number", max=3, window="day")])
    assert charge(store, "a", [rc(before)]).ok_indexes == [0]
    assert charge(store, "b", [rc(before)]).ok_indexes == [0]
    assert charge(store, "c", [rc(before)]).rejected
    assert charge(store, "d", [rc(after)]).values[0][1] == 2
    assert charge(store, "e", [rc(after)]).rejected == {0: ("MA:0022", "num")}


def test_rejected_recipient_consumes_nothing(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=5, window="day"),
                      Limit(id="daily", scope="account", max=1, window="day")])
    assert charge(store, "r1", [rc(plan, number=N1)]).ok_indexes == [0]
    res = charge(store, "r2", [rc(plan, number=N2)])
    assert res.rejected == {0: ("MA:0041", "daily")}
    assert res.values == [(key_of(plan, "num", number=N2), 0, 5, "num"), (key_of(plan, "daily"), 1, 1, "daily")]
    assert store.peek([key_of(plan, "num", number=N2), key_of(plan, "daily")]) == {
        key_of(plan, "num", number=N2): 0, key_of(plan, "daily"): 1}


def test_group_send_where_the_middle_recipient_breaches(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=1, window="day"),
                      Limit(id="daily", scope="account", max=10, window="day")])
    assert charge(store, "warm", [rc(plan, number=N2)]).ok_indexes == [0]
    res = charge(store, "group", [rc(plan, 0, N1), rc(plan, 1, N2), rc(plan, 2, N3)])
    assert res.ok_indexes == [0, 2]
    assert res.rejected == {1: ("MA:0022", "num")}
    k = {n: key_of(plan, "num", number=n) for n in (N1, N2, N3)}
    daily = key_of(plan, "daily")
    assert res.values == [
        (k[N1], 0, 1, "num"), (daily, 1, 10, "daily"),
        (k[N2], 1, 1, "num"),                           # breach: the rest is not read
        (k[N3], 0, 1, "num"), (daily, 2, 10, "daily"),  # recipient 0 already counted
    ]
    assert store.peek([k[N1], k[N2], k[N3], daily]) == {k[N1]: 1, k[N2]: 1, k[N3]: 1, daily: 3}


def test_recipients_of_one_call_count_against_each_other(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=1, window="day"),
                      Limit(id="daily", scope="account", max=2, window="day")])
    res = charge(store, "g", [rc(plan, 0, N1), rc(plan, 1, N1), rc(plan, 2, N2), rc(plan, 3, N3)])
    assert res.ok_indexes == [0, 2]
    assert res.rejected == {1: ("MA:0022", "num"), 3: ("MA:0041", "daily")}


def test_segments_unit_counts_billing_segments(store):
    plan = LimitPlan([Limit(id="segs", scope="account", max=5, window="day", unit="segments")])
    assert charge(store, "a", [rc(plan, segments=3)]).ok_indexes == [0]
    assert charge(store, "b", [rc(plan, segments=3)]).rejected == {0: ("MA:0041", "segs")}
    assert charge(store, "c", [rc(plan, segments=2)]).ok_indexes == [0]


def test_insufficient_balance_applies_nothing(store):
    plan = LimitPlan([Limit(id="daily", scope="account", max=10, window="day")])
    assert store.set_opening_balance("900001", 10)
    group = [rc(plan, 0, N1), rc(plan, 1, N2), rc(plan, 2, N3)]
    res = charge(store, "g1", group, debit="900001", price=5)
    assert res.insufficient_balance and res.ok_indexes == [] and res.balance_after == 10
    assert store.balance("900001") == 10
    assert store.peek([key_of(plan, "daily")]) == {key_of(plan, "daily"): 0}
    assert store.top_up("900001", 5) == 15
    res = charge(store, "g2", group, debit="900001", price=5)
    assert res.ok_indexes == [0, 1, 2] and not res.insufficient_balance and res.balance_after == 0
    assert store.balance("900001") == 0
    assert charge(store, "g3", group[:1], debit="900001").insufficient_balance


def test_debit_is_price_times_segments_of_accepted_recipients(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=1, window="day")])
    store.set_opening_balance("900001", 100)
    charge(store, "warm", [rc(plan, number=N2)], debit="900001", price=5)
    res = charge(store, "g", [rc(plan, 0, N1, segments=3), rc(plan, 1, N2, segments=3)], debit="900001", price=5)
    assert res.ok_indexes == [0] and res.balance_after == 100 - 5 - 15


def test_prepaid_account_without_balance_is_refused_and_postpaid_never(store):
    plan = LimitPlan([])
    res = charge(store, "p", [rc(plan)], debit="nobalance")
    assert res.insufficient_balance and res.balance_after is None
    for i in range(3):
        res = charge(store, f"post{i}", [rc(plan, segments=4)], debit=None, price=1000)
        assert res.ok_indexes == [0] and not res.insufficient_balance and res.balance_after is None


def test_opening_balance_is_set_once_and_balances_survive_reopening(open_store):
    store = open_store()
    assert store.balance("900001") is None
    assert store.set_opening_balance("900001", 100)
    charge(store, "r", [rc(LimitPlan([]))], debit="900001", price=7)
    assert store.top_up("900001", 20) == 113
    assert not store.set_opening_balance("900001", 100)  # a reload does not reset the balance
    store.close()
    again = open_store()
    assert not again.set_opening_balance("900001", 100)
    assert again.balance("900001") == 113


def test_replay_counts_nothing_twice_and_survives_reopening(open_store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=3, window="day")])
    store = open_store()
    store.set_opening_balance("900001", 50)
    first = charge(store, "gw1:42", [rc(plan, 0, N1), rc(plan, 1, N2)], debit="900001", price=5)
    again = charge(store, "gw1:42", [rc(plan, 0, N1), rc(plan, 1, N2)], debit="900001", price=5)
    assert again.replayed and not first.replayed and again.stored_response is None
    assert (again.ok_indexes, again.rejected, again.values, again.balance_after) == \
           (first.ok_indexes, first.rejected, first.values, first.balance_after) == \
           ([0, 1], {}, first.values, 40)
    store.remember("gw1:42", b"\x08\x00serialized answer")
    store.close()
    store = open_store()
    third = charge(store, "gw1:42", [rc(plan, 0, N1), rc(plan, 1, N2)], debit="900001", price=5)
    assert third.replayed and third.stored_response == b"\x08\x00serialized answer"
    assert third.ok_indexes == [0, 1]
    assert store.peek([key_of(plan, "num", number=N1)]) == {key_of(plan, "num", number=N1): 1}
    assert store.balance("900001") == 40


def test_replay_returns_the_recorded_decision_even_after_limits_change(store):
    strict = LimitPlan([Limit(id="num", scope="account_number", max=0, window="day")])
    loose = LimitPlan([Limit(id="num", scope="account_number", max=9, window="day")])
    store.set_opening_balance("900001", 0)
    refused = charge(store, "r1", [rc(strict)])
    broke = charge(store, "r2", [rc(loose)], debit="900001")
    assert refused.rejected == {0: ("MA:0022", "num")} and broke.insufficient_balance
    store.top_up("900001", 100)
    replay1 = charge(store, "r1", [rc(loose)])
    replay2 = charge(store, "r2", [rc(loose)], debit="900001")
    assert replay1.replayed and replay1.rejected == {0: ("MA:0022", "num")} and replay1.ok_indexes == []
    assert replay2.replayed and replay2.insufficient_balance and replay2.ok_indexes == []
    assert store.balance("900001") == 100


def test_recall_reads_a_request_without_charging(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=5, window="day")])
    assert store.recall("r1", now=T0.timestamp()) is None
    first = charge(store, "r1", [rc(plan)])
    recalled = store.recall("r1", now=T0.timestamp())
    assert recalled.replayed and recalled.ok_indexes == first.ok_indexes and recalled.values == first.values
    store.remember("r1", b"answer", now=T0.timestamp())
    assert store.recall("r1", now=T0.timestamp()).stored_response == b"answer"
    assert store.recall("r2", now=T0.timestamp()) is None  # recall records nothing
    assert charge(store, "r2", [rc(plan)]).values[0][1] == 1


def test_remembered_answer_without_a_charge_is_replayed(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=5, window="day")])
    store.remember("rejected-by-rules", b"answer")
    res = charge(store, "rejected-by-rules", [rc(plan)])
    assert res.replayed and res.stored_response == b"answer" and res.ok_indexes == []
    assert store.peek([key_of(plan, "num")]) == {key_of(plan, "num"): 0}


def test_request_ids_are_kept_24_hours(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=5, window="month")])
    charge(store, "r", [rc(plan)])
    assert charge(store, "r", [rc(plan)], now=T0 + timedelta(hours=23, minutes=59)).replayed


def test_sqlite_forgets_request_ids_after_24_hours(tmp_path):
    store = sqlite_store.SqliteCounterStore(str(tmp_path / "c.db"))
    plan = LimitPlan([Limit(id="num", scope="account_number", max=5, window="month")])
    charge(store, "r", [rc(plan)])
    later = charge(store, "r", [rc(plan)], now=T0 + timedelta(hours=24, seconds=1))
    assert not later.replayed and later.values[0][1] == 1
    store.close()


def test_redis_keys_expire_with_their_window_and_request_ids_after_24_hours(redis_url):
    store = RedisCounterStore(redis_url, prefix="ttl:")
    plan = LimitPlan([Limit(id="min", scope="account", max=5, window="minute")])
    now = T0 + timedelta(seconds=45)
    inc = rc(plan, now=now).increments[0]
    charge(store, "r", [RecipientCharge(0, [inc], 1)], now=now)
    client = redis.Redis.from_url(redis_url)
    assert inc.ttl_seconds == 15 + 60
    assert 70 <= client.ttl(f"ttl:c:{inc.key}") <= 75
    assert 86390 <= client.ttl("ttl:req:r") <= 86400
    client.close()
    store.close()


def test_fixed_window_expires_with_its_bucket(store):
    plan = LimitPlan([Limit(id="min", scope="account_number", max=2, window="minute")])
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    assert charge(store, "a", [rc(plan, now=at(10))], now=at(10)).ok_indexes == [0]
    assert charge(store, "b", [rc(plan, now=at(58))], now=at(58)).ok_indexes == [0]
    assert charge(store, "c", [rc(plan, now=at(59))], now=at(59)).rejected == {0: ("MA:0022", "min")}
    assert charge(store, "d", [rc(plan, now=at(60))], now=at(60)).ok_indexes == [0]


def test_sliding_window_holds_over_any_interval_of_its_length(store):
    plan = LimitPlan([Limit(id="slide", scope="account_number", max=2, window="minute", sliding=True)])
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    one = lambda rid, s: charge(store, rid, [rc(plan, now=at(s))], now=at(s))  # noqa: E731
    assert one("a", 50).ok_indexes == [0]
    assert one("b", 55).ok_indexes == [0]
    over = one("c", 70)                     # a fixed minute would have reset at 60
    assert over.rejected == {0: ("MA:0022", "slide")} and over.values[0][1] == 2
    assert one("d", 110).rejected           # 50 and 55 are still inside (110-60, 110]
    assert one("e", 111).values[0][1] == 1  # 50 has left the window, 55 has not
    assert one("f", 111).rejected


def test_month_window_turns_at_shanghai_midnight(store):
    plan = LimitPlan([Limit(id="month", scope="account", max=1, window="month")])
    end_jan = datetime(2024, 1, 31, 23, 59, 59, tzinfo=SH)   # 15:59:59 UTC
    start_feb = datetime(2024, 2, 1, 0, 0, 0, tzinfo=SH)     # 16:00:00 UTC, still January in UTC
    assert charge(store, "a", [rc(plan, now=end_jan)], now=end_jan).ok_indexes == [0]
    assert charge(store, "b", [rc(plan, now=end_jan)], now=end_jan).rejected == {0: ("MA:0041", "month")}
    assert charge(store, "c", [rc(plan, now=start_feb)], now=start_feb).ok_indexes == [0]


def test_sqlite_sweep_deletes_expired_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "SWEEP_EVERY", 1)  # sweep before every charge
    store = sqlite_store.SqliteCounterStore(str(tmp_path / "c.db"))
    plan = LimitPlan([Limit(id="min", scope="account_number", max=5, window="minute")])
    for i in range(3):
        charge(store, f"old{i}", [rc(plan, number=f"1380000000{i}")])
    count = lambda table: store._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
    assert (count("counters"), count("requests")) == (3, 3)
    later = T0 + timedelta(days=2)
    charge(store, "new", [rc(plan, now=later)], now=later)
    assert (count("counters"), count("requests")) == (1, 1)
    store.close()


def test_make_store_names_the_backends(tmp_path):
    store = make_store("sqlite", str(tmp_path / "c.db"), "redis://unused")
    store.close()
    with pytest.raises(ValueError, match="unknown counter backend 'memcached'"):
        make_store("memcached", "", "")
