"""Which limits apply to a recipient and which buckets they count in (no store involved)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from policy.counters.keys import LimitPlan, increments_for
from policy.rules.model import LIMIT_SCOPES, Limit

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2024, 3, 15, 10, 30, 20, tzinfo=SH)


def ids(incs):
    return [i.limit_id for i in incs]


def incs(limits, account="900001", channel="ch1", number="13800138000", content="h1", segments=1, now=NOW):
    return increments_for(limits, account, channel, number, content, segments, now)


def test_every_scope_gets_its_code_and_subject():
    limits = [Limit(id=f"l-{scope}", scope=scope, max=5, window="day") for scope in LIMIT_SCOPES]
    got = {i.limit_id: i for i in incs(limits)}
    assert {lid: i.code for lid, i in got.items()} == {f"l-{s}": code for s, code in LIMIT_SCOPES.items()}
    assert got["l-account_number"].key.startswith("an:l-account_number:900001:13800138000:day1:")
    assert got["l-account"].key.startswith("a:l-account:900001:day1:")
    assert got["l-account_number_content"].key.startswith("anc:l-account_number_content:900001:13800138000:h1:")
    assert got["l-channel"].key.startswith("c:l-channel:ch1:day1:")
    assert got["l-channel_number"].key.startswith("cn:l-channel_number:ch1:13800138000:")
    assert got["l-channel_content"].key.startswith("cc:l-channel_content:ch1:h1:")


def test_account_specific_limit_replaces_defaults_of_its_scope_only():
    limits = [
        Limit(id="default-num-min", scope="account_number", max=5, window="minute"),
        Limit(id="default-num-day", scope="account_number", max=50, window="day"),
        Limit(id="default-daily", scope="account", max=1000, window="day"),
        Limit(id="vip-num", scope="account_number", max=500, window="day", accounts=("900001",)),
    ]
    assert ids(incs(limits, account="900001")) == ["default-daily", "vip-num"]
    assert ids(incs(limits, account="900002")) == ["default-num-min", "default-num-day", "default-daily"]


def test_channel_scoped_limits_follow_the_recipients_channel():
    limits = [
        Limit(id="all-channels", scope="channel", max=100, window="minute"),
        Limit(id="only-ch2", scope="channel_number", max=3, window="day", channels=("ch2",)),
        Limit(id="per-number", scope="account_number", max=3, window="day"),
    ]
    assert ids(incs(limits, channel="ch1")) == ["all-channels", "per-number"]
    assert ids(incs(limits, channel="ch2")) == ["all-channels", "only-ch2", "per-number"]
    assert ids(incs(limits, channel=None)) == ["per-number"]


def test_amount_is_one_message_or_the_segments():
    limits = [Limit(id="msgs", scope="account", max=9, window="day"),
              Limit(id="segs", scope="account", max=9, window="day", unit="segments")]
    assert [i.amount for i in incs(limits, segments=3)] == [1, 3]


def test_day_bucket_turns_at_local_midnight_not_utc():
    lim = [Limit(id="d", scope="account", max=1, window="day")]
    before = incs(lim, now=datetime(2024, 3, 15, 23, 59, 59, tzinfo=SH))[0]
    after = incs(lim, now=datetime(2024, 3, 16, 0, 0, 0, tzinfo=SH))[0]
    assert before.key != after.key
    assert after.window_start == int(datetime(2024, 3, 16, tzinfo=SH).timestamp())
    assert before.ttl_seconds == 1 + 60  # one second to midnight, plus the expiry grace
    # 07:59 and 08:01 UTC on the same day are both one Shanghai day (15:59 and 16:01)
    a = incs(lim, now=datetime(2024, 3, 15, 7, 59, tzinfo=timezone.utc).astimezone(SH))[0]
    b = incs(lim, now=datetime(2024, 3, 15, 8, 1, tzinfo=timezone.utc).astimezone(SH))[0]
    assert a.key == b.key


def test_month_bucket_is_the_calendar_month_in_shanghai():
    lim = [Limit(id="m", scope="account", max=1, window="month")]
    jan_first = incs(lim, now=datetime(2024, 1, 1, 0, 0, 0, tzinfo=SH))[0]
    jan_last = incs(lim, now=datetime(2024, 1, 31, 23, 59, 59, tzinfo=SH))[0]
    feb_first = incs(lim, now=datetime(2024, 2, 1, 0, 0, 0, tzinfo=SH))[0]
    assert jan_first.key == jan_last.key != feb_first.key
    assert jan_last.ttl_seconds == 1 + 60
    assert feb_first.window_start == int(datetime(2024, 2, 1, tzinfo=SH).timestamp())


def test_size_multiplies_the_bucket():
    five_min = [Limit(id="f", scope="account", max=1, window="minute", size=5)]
    keys = {incs(five_min, now=NOW.replace(minute=m, second=0))[0].key for m in range(30, 35)}
    assert len(keys) == 1
    assert incs(five_min, now=NOW.replace(minute=35, second=0))[0].key not in keys
    quarter = [Limit(id="q", scope="account", max=1, window="month", size=3)]
    q = [incs(quarter, now=datetime(2024, m, 10, tzinfo=SH))[0].key for m in range(1, 8)]
    assert q[0] == q[1] == q[2] != q[3] == q[4] == q[5] != q[6]


def test_sliding_window_reads_61_sub_buckets_of_a_sixtieth():
    hour = [Limit(id="s", scope="account", max=1, window="hour", sliding=True)]
    inc = incs(hour)[0]
    assert inc.span == 61
    local = int(NOW.timestamp()) + 8 * 3600  # buckets count local wall-clock seconds
    assert inc.key.endswith(f":hour1s:{local // 60}")  # one-minute sub-buckets
    assert inc.window_start == (local // 60 - 60) * 60 - 8 * 3600
    assert int(NOW.timestamp()) - inc.window_start >= 3600


@pytest.mark.parametrize("day, back, span", [
    (datetime(2024, 3, 15, 9, tzinfo=SH), "2024-02-15", 30),
    (datetime(2024, 3, 31, 9, tzinfo=SH), "2024-02-29", 32),   # clamped to February's end
    (datetime(2024, 1, 10, 9, tzinfo=SH), "2023-12-10", 32),
])
def test_sliding_month_spans_back_to_the_same_date(day, back, span):
    inc = incs([Limit(id="sm", scope="account", max=1, window="month", sliding=True)], now=day)[0]
    assert inc.span == span
    assert datetime.fromtimestamp(inc.window_start, SH).date().isoformat() == back


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        incs([Limit(id="d", scope="account", max=1, window="day")], now=datetime(2024, 1, 1))


def test_plan_caches_the_choice_per_account_and_channel():
    plan = LimitPlan([Limit(id="d", scope="channel", max=1, window="day")])
    assert plan.applicable("a", "ch1") is plan.applicable("a", "ch1")
    assert plan.increments("a", "ch1", "138", "h", 1, NOW + timedelta(days=1))[0].limit_id == "d"


def test_a_plan_reused_across_seconds_gives_what_a_fresh_plan_gives():
    # LimitPlan caches windows per whole second and UTC offset: crossing seconds, minutes, days
    # and offsets (DST zone) must never serve a stale window
    limits = [Limit(id=f"{w}{n}{'s' if sl else ''}", scope="account_number", max=9, window=w, size=n, sliding=sl)
              for w in ("minute", "hour", "day", "month") for n in (1, 2) for sl in (False, True)]
    plan = LimitPlan(limits)
    ny = ZoneInfo("America/New_York")
    starts = [datetime(2024, 3, 15, 23, 59, 58, 500000, tzinfo=SH),
              datetime(2024, 3, 10, 1, 59, 58, tzinfo=ny),      # the spring-forward gap
              datetime(2024, 12, 31, 23, 59, 59, 999000, tzinfo=SH)]
    for start in starts:
        for step in range(0, 6000, 250):   # milliseconds
            now = (start.astimezone(timezone.utc) + timedelta(milliseconds=step)).astimezone(start.tzinfo)
            cached = plan.increments("900001", "ch1", "13800138000", "h1", 2, now)
            fresh = increments_for(limits, "900001", "ch1", "13800138000", "h1", 2, now)
            assert cached == fresh, now
            for inc in cached:
                assert inc.key == f"{inc.base}:{inc.bucket}"
