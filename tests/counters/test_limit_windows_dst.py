"""Windows in a platform time zone with DST (issue 3: "minute, hour, day and calendar month in a
configured time zone ... fixed or sliding").

- Sliding windows are real time: their sub-buckets count epoch seconds, so a DST change neither
  skips counts (spring forward: 4 of max 2 were accepted within 61 s) nor counts an hour twice
  (fall back). Zones without DST keep the keys of the wall-clock indexing used before.
- Fixed windows are wall-clock buckets whose bounds are converted through the zone: a bucket
  expires exactly when its last local second has passed, so a day counter of a 25-hour day lives
  25 hours (it expired an hour early in Redis and SQLite and Redis disagreed), and the hour a
  fall-back repeats is one bucket until its second pass ends, on every backend.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from policy.counters import LimitPlan, RecipientCharge
from policy.counters.keys import EXPIRY_GRACE, UNIT_SECONDS, increments_for
from policy.rules.model import Limit

from .passing_time import let_time_pass

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")
SPRING = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)    # Berlin 02:00 CET -> 03:00 CEST
AUTUMN = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)   # Berlin 03:00 CEST -> 02:00 CET


def at(utc: datetime, tz=BERLIN) -> datetime:
    return utc.astimezone(tz)


def inc(lim: Limit, now: datetime, account="900001", channel="ch1", number="13800000001", content="h1"):
    (i,) = increments_for([lim], account, channel, number, content, 1, now)
    return i


def charge(store, plan, rid, now, number="13800000001", account="900001", channel="ch1"):
    rc = RecipientCharge(0, plan.increments(account, channel, number, "h1", 1, now), 1)
    return len(store.charge(rid, [rc], None, 0, now.timestamp()).ok_indexes)


WINDOWS = [Limit(id=f"{w}{n}{'s' if s else ''}", scope="account_number", max=9, window=w, size=n, sliding=s)
           for w in ("minute", "hour", "day") for n in (1, 2, 7) for s in (False, True)]


# --- sliding windows: real time -------------------------------------------------------------

def test_sliding_sub_buckets_follow_real_time_across_spring_forward():
    lim = Limit(id="s", scope="account_number", max=2, window="hour", sliding=True)
    before = inc(lim, at(SPRING - timedelta(minutes=1)))     # 01:59 CET
    after = inc(lim, at(SPRING))                             # 03:00 CEST, 60 s later
    assert after.bucket == before.bucket + 1
    assert after.base == before.base


def test_sliding_sub_buckets_follow_real_time_across_fall_back():
    lim = Limit(id="s", scope="account_number", max=2, window="hour", sliding=True)
    first = inc(lim, at(AUTUMN - timedelta(minutes=30)))     # 02:30 CEST
    second = inc(lim, at(AUTUMN + timedelta(minutes=30)))    # 02:30 CET, an hour later
    assert second.bucket == first.bucket + 60


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                                  "America/Havana", "Asia/Shanghai"])
def test_sliding_windows_span_their_length_in_real_seconds_at_every_instant(zone):
    """Across both 2026 DST changes of the zone (every 10 minutes of the days around them), each
    sliding window reaches back W to W + W/60 real seconds and its sub-buckets advance with real
    time: bucket * width - t stays within one sub-bucket."""
    tz = ZoneInfo(zone)
    plan = LimitPlan([lim for lim in WINDOWS if lim.sliding])
    drift = {lim.id: [] for lim in plan.limits}
    for month in (3, 4, 9, 10, 11):
        t = datetime(2026, month, 1, tzinfo=UTC)
        while t.month == month:
            now = t.astimezone(tz)
            epoch = int(now.timestamp())
            for i in plan.increments("900001", "ch1", "1", "h", 1, now):
                lim = next(lim for lim in plan.limits if lim.id == i.limit_id)
                width = UNIT_SECONDS[lim.window] * lim.size
                assert width <= epoch - i.window_start <= width + width // 60, (now, lim.id)
                drift[lim.id].append(i.bucket * (width // 60) - epoch)
            t += timedelta(minutes=10)
    for lim in plan.limits:
        sub = UNIT_SECONDS[lim.window] * lim.size // 60
        assert max(drift[lim.id]) - min(drift[lim.id]) < sub, lim.id


@pytest.mark.parametrize("lim", [lim for lim in WINDOWS if lim.sliding], ids=lambda lim: lim.id)
def test_shanghai_sliding_keys_are_those_of_the_wall_clock_indexing(lim):
    # earlier versions indexed sub-buckets by local wall-clock seconds; without DST that is the
    # same thing, and counts in flight must survive the upgrade
    sub = UNIT_SECONDS[lim.window] * lim.size // 60
    for now in (datetime(2026, 12, 8, 10, 0, 5, tzinfo=SHANGHAI), datetime(2026, 7, 1, 23, 59, 59, tzinfo=SHANGHAI)):
        local = int(now.timestamp()) + 8 * 3600
        i = inc(lim, now)
        assert i.bucket == local // sub
        assert i.window_start == (local // sub - 60) * sub - 8 * 3600
        assert i.ttl_seconds == (local // sub + 61) * sub - local + EXPIRY_GRACE


# --- fixed windows: bounds through the zone ------------------------------------------------

@pytest.mark.parametrize("lim", [lim for lim in WINDOWS if not lim.sliding], ids=lambda lim: lim.id)
def test_shanghai_fixed_windows_are_unchanged(lim):
    width = UNIT_SECONDS[lim.window] * lim.size
    now = datetime(2026, 12, 8, 10, 0, 5, tzinfo=SHANGHAI)
    local = int(now.timestamp()) + 8 * 3600
    i = inc(lim, now)
    start = local // width * width - 8 * 3600
    assert (i.bucket, i.window_start, i.ttl_seconds) == (local // width, start,
                                                         start + width - int(now.timestamp()) + EXPIRY_GRACE)


def test_day_bucket_of_a_25_hour_day_expires_at_its_local_midnight():
    lim = Limit(id="day", scope="account_number", max=2, window="day")
    t1 = at(datetime(2026, 10, 24, 23, 0, tzinfo=UTC))       # 01:00 CEST on the 25th
    t2 = at(datetime(2026, 10, 25, 22, 30, tzinfo=UTC))      # 23:30 CET, the same local day
    a, b = inc(lim, t1), inc(lim, t2)
    assert a.key == b.key
    day_start, day_end = datetime(2026, 10, 25, tzinfo=BERLIN), datetime(2026, 10, 26, tzinfo=BERLIN)
    assert day_end.timestamp() - day_start.timestamp() == 25 * 3600
    assert a.window_start == b.window_start == day_start.timestamp()
    assert t1.timestamp() + a.ttl_seconds == day_end.timestamp() + EXPIRY_GRACE
    assert t2.timestamp() + b.ttl_seconds == day_end.timestamp() + EXPIRY_GRACE


def test_day_bucket_of_a_23_hour_day_starts_at_its_local_midnight():
    lim = Limit(id="day", scope="account_number", max=2, window="day")
    now = at(datetime(2026, 3, 29, 8, 0, tzinfo=UTC))        # 10:00 CEST
    i = inc(lim, now)
    assert i.window_start == datetime(2026, 3, 29, tzinfo=BERLIN).timestamp()
    assert now.timestamp() + i.ttl_seconds == datetime(2026, 3, 30, tzinfo=BERLIN).timestamp() + EXPIRY_GRACE


def test_the_hour_a_fall_back_repeats_is_one_bucket_until_its_second_pass_ends():
    lim = Limit(id="hour", scope="account_number", max=2, window="hour")
    first = inc(lim, at(AUTUMN - timedelta(minutes=30)))     # 02:30 CEST
    second = inc(lim, at(AUTUMN + timedelta(minutes=30)))    # 02:30 CET
    assert first.key == second.key
    end = (AUTUMN + timedelta(hours=1)).timestamp()          # 03:00 CET
    assert (AUTUMN - timedelta(minutes=30)).timestamp() + first.ttl_seconds == end + EXPIRY_GRACE
    assert first.window_start == (AUTUMN - timedelta(hours=1)).timestamp()   # 02:00 CEST


def test_fixed_month_ends_at_the_zones_month_end_across_dst():
    lim = Limit(id="m", scope="account", max=2, window="month")
    now = at(datetime(2026, 3, 15, 12, tzinfo=UTC))
    i = inc(lim, now)
    assert now.timestamp() + i.ttl_seconds == datetime(2026, 4, 1, tzinfo=BERLIN).timestamp() + EXPIRY_GRACE
    assert i.window_start == datetime(2026, 3, 1, tzinfo=BERLIN).timestamp()


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                                  "America/Havana", "Asia/Shanghai"])
def test_every_fixed_bucket_is_used_exactly_between_its_start_and_end(zone):
    """Minute by minute over the days around both 2026 DST changes: a bucket's key is only ever
    seen from its window_start up to its end (now + ttl - grace, the same from every instant),
    right up to it and never after; so a backend that expires it then loses nothing."""
    tz = ZoneInfo(zone)
    limits = [lim for lim in WINDOWS if not lim.sliding] + [Limit(id="month", scope="account", max=9, window="month")]
    plan = LimitPlan(limits)
    transitions = []
    for month in range(1, 13):
        day = datetime(2026, month, 1, tzinfo=UTC)
        while day.month == month:
            if (day + timedelta(days=1)).astimezone(tz).utcoffset() != day.astimezone(tz).utcoffset():
                transitions.append(day)
            day += timedelta(days=1)
    checked = 0
    for first in transitions or [datetime(2026, 3, 28, tzinfo=UTC)]:
        seen: dict[str, list] = {}   # key -> [start, end, first seen, last seen]
        scan_start, scan_end = first - timedelta(days=1), first + timedelta(days=3)
        t = scan_start
        while t < scan_end:
            now = t.astimezone(tz)
            epoch = int(now.timestamp())
            for i in plan.increments("900001", "ch1", "1", "h", 1, now):
                end = epoch + i.ttl_seconds - EXPIRY_GRACE
                entry = seen.setdefault(i.key, [i.window_start, end, epoch, epoch])
                assert entry[:2] == [i.window_start, end], (now, i.key)
                assert i.window_start <= epoch < end, (now, i.key)
                entry[3] = epoch
            t += timedelta(minutes=1)
        for key, (start, end, first_seen, last_seen) in seen.items():
            if start >= scan_start.timestamp():
                assert first_seen == start, key      # used from its start
                checked += 1
            if end <= scan_end.timestamp():
                assert last_seen == end - 60, key    # used right up to its end
                checked += 1
    assert checked > 1000


# --- the same, through every backend ---------------------------------------------------------

def test_sliding_hour_holds_across_spring_forward(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=2, window="hour", sliding=True)])
    t1, t2 = at(SPRING - timedelta(minutes=1)), at(SPRING)  # 01:59 CET, 03:00 CEST
    accepted = [charge(store, plan, f"r{i}", t) for i, t in enumerate([t1, t1, t2, t2])]
    assert accepted == [1, 1, 0, 0]


def test_sliding_hour_does_not_count_an_hour_twice_at_fall_back(store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=2, window="hour", sliding=True)])
    t1 = at(AUTUMN - timedelta(minutes=30))                  # 02:30 CEST
    t2 = at(AUTUMN + timedelta(minutes=31))                  # 02:31 CET, 61 real minutes later
    t3 = at(AUTUMN + timedelta(minutes=40))
    accepted = [charge(store, plan, f"r{i}", t) for i, t in enumerate([t1, t1, t1, t2, t2, t3])]
    assert accepted == [1, 1, 0, 1, 1, 0]


def test_a_25_hour_day_keeps_its_count_to_the_end_on_every_backend(store_spec, store, open_store):
    plan = LimitPlan([Limit(id="day", scope="account_number", max=2, window="day")])
    t1 = at(datetime(2026, 10, 24, 23, 0, tzinfo=UTC))       # 01:00 CEST on the 25th
    t2 = at(datetime(2026, 10, 25, 22, 30, tzinfo=UTC))      # 23:30 CET, the same local day
    t3 = at(datetime(2026, 10, 25, 23, 0, 1, tzinfo=UTC))    # 00:00:01 CET on the 26th
    assert [charge(store, plan, f"a{i}", t1) for i in range(3)] == [1, 1, 0]
    store = let_time_pass(store_spec, store, open_store, t1.timestamp(), int(t2.timestamp() - t1.timestamp()))
    assert [charge(store, plan, f"b{i}", t2) for i in range(2)] == [0, 0]
    assert charge(store, plan, "c", t3) == 1                 # the next day counts afresh


def test_the_repeated_hour_counts_both_passes_on_every_backend(store_spec, store, open_store):
    plan = LimitPlan([Limit(id="num", scope="account_number", max=2, window="hour")])
    t1 = at(AUTUMN - timedelta(minutes=30))                  # 02:30 CEST
    t2 = at(AUTUMN + timedelta(minutes=30))                  # 02:30 CET
    t3 = at(AUTUMN + timedelta(hours=1))                     # 03:00 CET, the next hour
    assert [charge(store, plan, f"r{i}", t1) for i in range(2)] == [1, 1]
    store = let_time_pass(store_spec, store, open_store, t1.timestamp(), 3600)
    assert [charge(store, plan, f"q{i}", t2) for i in range(2)] == [0, 0]
    assert charge(store, plan, "n", t3) == 1
