"""Which limits apply to one recipient, and the counter buckets they count in.

Choosing limits (per scope, see policy.rules.model.LIMIT_SCOPES; docs/rules.md "limits"):
- a limit applies when its `accounts` is empty or names the account, and its `channels` is empty
  or names the recipient's channel;
- account scopes: limits that name the account replace, for that account, the applicable limits
  of the same scope that name no account (per-account settings override the defaults; several
  may remain, e.g. a per-minute and a per-day limit);
- channel scopes: the limits that name no account are the channel's shared quota, counted for
  all accounts together; among them, limits that name the recipient's channel replace, on that
  channel, those of the same scope that name no channel (per-channel settings override the
  defaults). Limits that name accounts are sub-quotas: each named account counts in its own
  counter (the key carries the account), checked in addition to the shared quota, never instead
  of it; among one account's sub-quotas of a scope, those naming the channel again replace those
  naming none. So an account-named limit can tighten a channel's quota, never raise it;
- channel scopes need a channel: a recipient without a route counts in none of them.
Increments keep the order of the limits in the policy, so the first breach, whose code the
recipient gets, is the first breached limit in file order.

Windows are counted in the platform time zone (`now` carries it):
- fixed minute/hour/day of size N: buckets of N units of local wall-clock time counted from the
  Unix epoch (a 1-day bucket runs from local midnight to local midnight, 23 or 25 hours on a DST
  day). A bucket's start and end are converted through the zone: it expires exactly when its
  last local second has passed. At a fall-back the repeated wall-clock times map to the same
  buckets, so the repeated hour's minutes (and that hour itself) count both passes together: a
  limit is then stricter for that hour, never looser;
- fixed month of size N: calendar months, bucket = (year*12 + month-1) // N, start and end
  through the zone likewise;
- sliding minute/hour/day of length W = N units: 60 sub-buckets of W/60 per window, counted in
  real (UTC epoch) seconds, not wall-clock ones, so a DST change neither skips nor repeats one.
  The epoch seconds are shifted by a constant of the zone, its UTC offset at SHIFT_REFERENCE,
  only so that zones without DST (Asia/Shanghai) keep the bucket indexes of earlier versions.
  The value checked is the sum of the current sub-bucket and the 60 before it, so everything
  accepted in the last W is counted and the limit holds in every interval of length W; in
  exchange a message stays counted up to W/60 longer than W (at most 61 sub-buckets old);
- sliding month of N months: local-date day sub-buckets (calendar alignment is the point there);
  the value is the sum from the same local date N months back (day clamped to the month's end)
  through today, the same "never under-count" rule.
Counter keys carry the bucket index, so a changed `max` keeps its counts across a hot reload while
a changed window starts new buckets. `window_start` and `ttl_seconds` are exact epoch times of
the bucket's bounds (converted through the zone); a bucket's bounds and the zone shift are cached
(per limit and second, and per bucket), so the hot path converts nothing per call.
"""
from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

from policy.rules.model import Limit

from .model import Increment

SCOPE_TAG = {
    "account_number": "an",
    "account": "a",
    "account_number_content": "anc",
    "channel": "c",
    "channel_number": "cn",
    "channel_content": "cc",
}
CHANNEL_SCOPES = frozenset({"channel", "channel_number", "channel_content"})
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
SUB_BUCKETS = 60
# Buckets outlive their window by this much so that a daemon whose clock lags a little still
# finds the bucket it counts in.
EXPIRY_GRACE = 60
# Sliding sub-buckets count epoch seconds shifted by the zone's UTC offset at this instant: a
# constant per zone (so a DST change moves no sub-bucket) that equals the offset of every zone
# without DST, whose sub-bucket keys therefore stay those of the wall-clock indexing used before.
SHIFT_REFERENCE = datetime(2026, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)


_SUBJECT = {scope: i for i, scope in enumerate(SCOPE_TAG)}
# account-named limits of the channel scopes: the account's own counter on the channel
_ACCOUNT_SUBJECT = {"channel": 6, "channel_number": 7, "channel_content": 8}


def _subject_kind(lim: Limit) -> int:
    if lim.accounts and lim.scope in CHANNEL_SCOPES:
        return _ACCOUNT_SUBJECT[lim.scope]
    return _SUBJECT[lim.scope]


class LimitPlan:
    """The limits of one policy version, with the per-(account, channel) choice cached.

    Build one per loaded PolicySet; it is immutable apart from its caches and safe to share
    between threads.
    """

    def __init__(self, limits: tuple[Limit, ...] | list[Limit]):
        self.limits = tuple(limits)
        for lim in self.limits:
            _check(lim)
        self._chosen: dict[tuple[str, str], tuple[Limit, ...]] = {}
        # what a key needs of each limit, made once: (limit, subject kind, key prefix, window tag,
        # counts segments, code)
        self._parts = {id(lim): (lim, _subject_kind(lim), f"{SCOPE_TAG[lim.scope]}:{lim.id}:",
                                 f":{lim.window}{lim.size}{'s' if lim.sliding else ''}",
                                 lim.unit == "segments", lim.code) for lim in self.limits}
        # windows of the limits at one whole second, UTC offset and zone: every message of that
        # second shares them. (second, offset, tzinfo, {id(limit): (bucket, start, ttl, span)})
        self._windows: tuple = (None, None, None, {})

    def applicable(self, account_id: str, channel_id: str | None) -> tuple[Limit, ...]:
        channel = channel_id or ""
        chosen = self._chosen.get((account_id, channel))
        if chosen is None:
            chosen = _choose(self.limits, account_id, channel)
            self._chosen[(account_id, channel)] = chosen
        return chosen

    def increments(self, account_id: str, channel_id: str | None, number: str, content_hash: str,
                   segments: int, now: datetime) -> list[Increment]:
        limits = self.applicable(account_id, channel_id)
        if not limits:
            return []
        offset = _utc_offset(now)
        epoch = now.timestamp()
        second = math.floor(epoch)
        tz = now.tzinfo
        at, at_offset, at_tz, windows = self._windows
        if at != second or at_offset != offset or at_tz is not tz:
            windows = {}
            self._windows = (second, offset, tz, windows)  # one assignment: threads see old or new
        channel = channel_id or ""
        parts = self._parts
        out = []
        for lim in limits:
            lim, kind, prefix, tag, by_segments, code = parts[id(lim)]
            if kind == 0:
                subject = f"{account_id}:{number}"
            elif kind == 1:
                subject = account_id
            elif kind == 2:
                subject = f"{account_id}:{number}:{content_hash}"
            elif kind == 3:
                subject = channel
            elif kind == 4:
                subject = f"{channel}:{number}"
            elif kind == 5:
                subject = f"{channel}:{content_hash}"
            elif kind == 6:
                subject = f"{channel}:{account_id}"
            elif kind == 7:
                subject = f"{channel}:{account_id}:{number}"
            else:
                subject = f"{channel}:{account_id}:{content_hash}"
            window = windows.get(id(lim))
            if window is None:
                window = windows[id(lim)] = _window(lim, now, second, offset)
            bucket, start, ttl, span = window
            base = prefix + subject + tag
            out.append(Increment(f"{base}:{bucket}", segments if by_segments else 1,
                                 lim.max, ttl, lim.id, code, start, span, base, bucket))
        return out


def increments_for(limits, account_id: str, channel_id: str | None, number: str, content_hash: str,
                   segments: int, now: datetime) -> list[Increment]:
    """One-off form of LimitPlan.increments; a daemon keeps a LimitPlan per policy version instead."""
    return LimitPlan(limits).increments(account_id, channel_id, number, content_hash, segments, now)


def _choose(limits: tuple[Limit, ...], account_id: str, channel: str) -> tuple[Limit, ...]:
    """The limits of one (account, channel), in policy order (see the module docstring)."""
    fits = [
        lim for lim in limits
        if (not lim.accounts or account_id in lim.accounts)
        and (not lim.channels or channel in lim.channels)
        and (channel or lim.scope not in CHANNEL_SCOPES)
    ]
    # account scopes: (scope, False) - the account's own limits replace the defaults.
    # channel scopes: (scope, names accounts) - the shared quota and the account's sub-quota are
    # separate groups; in each, limits naming the channel replace those naming none.
    overridden = set()
    for lim in fits:
        if lim.scope in CHANNEL_SCOPES:
            if lim.channels:
                overridden.add((lim.scope, bool(lim.accounts)))
        elif lim.accounts:
            overridden.add((lim.scope, False))
    if not overridden:
        return tuple(fits)
    return tuple(lim for lim in fits if not _replaced(lim, overridden))


def _replaced(lim: Limit, overridden: set) -> bool:
    if lim.scope in CHANNEL_SCOPES:
        return not lim.channels and (lim.scope, bool(lim.accounts)) in overridden
    return not lim.accounts and (lim.scope, False) in overridden


def _check(lim: Limit) -> None:
    """The loader validates limits; this keeps a bad one from producing wrong keys silently."""
    if lim.scope not in SCOPE_TAG:
        raise ValueError(f"limit {lim.id}: unknown scope {lim.scope!r}")
    if lim.window not in UNIT_SECONDS and lim.window != "month":
        raise ValueError(f"limit {lim.id}: unknown window {lim.window!r}")
    if lim.size < 1:
        raise ValueError(f"limit {lim.id}: size must be at least 1, got {lim.size}")


def _utc_offset(now: datetime) -> int:
    delta = now.utcoffset()
    if delta is None:
        raise ValueError("`now` must be a timezone-aware datetime in the platform time zone")
    return int(delta.total_seconds())


def _window(lim: Limit, now: datetime, second: int, offset: int) -> tuple[int, int, int, int]:
    """(bucket index, window start epoch, ttl seconds, span) of `lim` at `now` (whole `second`,
    UTC `offset`)."""
    tz = now.tzinfo
    if lim.window == "month":
        return _sliding_month(lim, now) if lim.sliding else _fixed_month(lim, now, second)
    width = UNIT_SECONDS[lim.window] * lim.size
    if not lim.sliding:
        bucket = (second + offset) // width
        start, end = _local_bounds(bucket * width, width, tz)
        return bucket, start, max(end - second, 0) + EXPIRY_GRACE, 1
    shift = _sliding_shift(tz)
    sub = width // SUB_BUCKETS
    shifted = second + shift
    bucket = shifted // sub
    span = SUB_BUCKETS + 1
    ttl = (bucket + span) * sub - shifted + EXPIRY_GRACE
    return bucket, (bucket - SUB_BUCKETS) * sub - shift, ttl, span


@lru_cache(maxsize=64)
def _sliding_shift(tz) -> int:
    """The constant that sliding sub-buckets add to epoch seconds in zone `tz`."""
    return int(SHIFT_REFERENCE.astimezone(tz).utcoffset().total_seconds())


def _shown_at(naive: datetime, tz) -> tuple[int, int, bool]:
    """(first, last, real): the epoch seconds at which the zone's wall clock first and last shows
    `naive` (whole seconds; they differ for a time a fall-back repeats). For a time a DST gap
    skips, real is False and first = last = the transition, the first real second whose
    wall-clock time is later."""
    early = int(naive.replace(tzinfo=tz).timestamp())
    late = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    if early == late:
        return early, early, True
    lo, hi = min(early, late), max(early, late)
    if _wall(lo, tz) == naive:  # repeated: both are real
        return lo, hi, True
    # skipped: wall(lo) < naive < wall(hi) with one transition between (fold 0 and fold 1 read
    # the time with the offset before and after it); find the first second past it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(mid, tz) < naive:
            lo = mid
        else:
            hi = mid
    return hi, hi, False


def _local_start(naive: datetime, tz) -> int:
    """The first real second whose wall-clock time is `naive` or later: where a bucket that
    starts at `naive` starts."""
    return _shown_at(naive, tz)[0]


def _local_end(naive: datetime, tz) -> int:
    """The real second right after the last one whose wall-clock time is before `naive`: where a
    bucket that ends at `naive` ends (its last second repeated by a fall-back: after the repeat;
    skipped by a gap: at the transition)."""
    _, last, real = _shown_at(naive - timedelta(seconds=1), tz)
    return last + 1 if real else last


def _wall(epoch: int, tz) -> datetime:
    return datetime.fromtimestamp(epoch, tz).replace(tzinfo=None)


@lru_cache(maxsize=1024)
def _local_bounds(local_start: int, width: int, tz) -> tuple[int, int]:
    """Epoch (start, end) of the fixed bucket that spans local wall-clock seconds
    [local_start, local_start + width): start is the first real second whose local time is in
    the bucket, end the first after the last one (so a bucket that a fall-back repeats ends
    after the repeat)."""
    begin = _NAIVE_EPOCH + timedelta(seconds=local_start)
    return _local_start(begin, tz), _local_end(begin + timedelta(seconds=width), tz)


@lru_cache(maxsize=256)
def _month_bounds(bucket: int, size: int, tz) -> tuple[int, int]:
    def first_day(month_index: int) -> datetime:
        year, month0 = divmod(month_index, 12)
        return datetime(year, month0 + 1, 1)
    return _local_start(first_day(bucket * size), tz), _local_end(first_day((bucket + 1) * size), tz)


def _fixed_month(lim: Limit, now: datetime, second: int) -> tuple[int, int, int, int]:
    bucket = (now.year * 12 + now.month - 1) // lim.size
    start, end = _month_bounds(bucket, lim.size, now.tzinfo)
    return bucket, start, max(end - second, 0) + EXPIRY_GRACE, 1


def _sliding_month(lim: Limit, now: datetime) -> tuple[int, int, int, int]:
    today = now.date()
    back = _months_back(today, lim.size)
    bucket = (today - date(1970, 1, 1)).days
    span = (today - back).days + 1
    start = _local_start(datetime.combine(back, time(0)), now.tzinfo)
    # a day bucket is read for as long as some later day's window reaches back to it
    ttl = int(timedelta(days=31 * lim.size + 2).total_seconds())
    return bucket, start, ttl, span


def _months_back(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month0 = divmod(index, 12)
    next_first = date(year + (month0 + 1) // 12, (month0 + 1) % 12 + 1, 1)
    last_day = (next_first - timedelta(days=1)).day
    return date(year, month0 + 1, min(day.day, last_day))
