"""Which limits apply to one recipient, and the counter buckets they count in.

Choosing limits (per scope, see policy.rules.model.LIMIT_SCOPES):
- a limit applies when its `accounts` is empty or names the account, and its `channels` is empty
  or names the recipient's channel;
- limits that name the account replace, for that account, the applicable limits of the same scope
  that name no account (per-account settings override the defaults; several may remain, e.g. a
  per-minute and a per-day limit);
- channel scopes need a channel: a recipient without a route counts in none of them.
Increments keep the order of the limits in the policy, so the first breach, whose code the
recipient gets, is the first breached limit in file order.

Windows are counted in the platform time zone (`now` carries it):
- fixed minute/hour/day of size N: buckets of N units of local wall-clock time counted from the
  Unix epoch (a 1-day bucket runs from local midnight to local midnight);
- fixed month of size N: calendar months, bucket = (year*12 + month-1) // N;
- sliding minute/hour/day of length W = N units: 60 sub-buckets of W/60 per window. The value
  checked is the sum of the current sub-bucket and the 60 before it, so everything accepted in the
  last W is counted and the limit holds in every interval of length W; in exchange a message stays
  counted up to W/60 longer than W (at most 61 sub-buckets old);
- sliding month of N months: day sub-buckets; the value is the sum from the same local date N
  months back (day clamped to the month's end) through today, the same "never under-count" rule.
Counter keys carry the bucket index, so a changed `max` keeps its counts across a hot reload while
a changed window starts new buckets. `window_start` and `ttl_seconds` use `now`'s UTC offset; the
keys themselves follow local wall-clock time.
"""
from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

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


_SUBJECT = {scope: i for i, scope in enumerate(SCOPE_TAG)}


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
        self._parts = {id(lim): (lim, _SUBJECT[lim.scope], f"{SCOPE_TAG[lim.scope]}:{lim.id}:",
                                 f":{lim.window}{lim.size}{'s' if lim.sliding else ''}",
                                 lim.unit == "segments", lim.code) for lim in self.limits}
        # windows of minute/hour/day limits at one whole second and UTC offset: every message of
        # that second shares them. (second, offset, {id(limit): (bucket, start, ttl, span)})
        self._windows: tuple = (None, None, {})

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
        at, at_offset, windows = self._windows
        if at != second or at_offset != offset:
            windows = {}
            self._windows = (second, offset, windows)  # one assignment: threads see old or new
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
            else:
                subject = f"{channel}:{content_hash}"
            if lim.window == "month":  # (its ttl counts from the exact `now`)
                window = _window(lim, now, epoch, offset)
            else:
                window = windows.get(id(lim))
                if window is None:
                    window = windows[id(lim)] = _window(lim, now, epoch, offset)
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
    fits = [
        lim for lim in limits
        if (not lim.accounts or account_id in lim.accounts)
        and (not lim.channels or channel in lim.channels)
        and (channel or lim.scope not in CHANNEL_SCOPES)
    ]
    overridden = {lim.scope for lim in fits if lim.accounts}
    return tuple(lim for lim in fits if lim.accounts or lim.scope not in overridden)


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


def _window(lim: Limit, now: datetime, epoch: float, offset: int) -> tuple[int, int, int, int]:
    """(bucket index, window start epoch, ttl seconds, span) of `lim` at `now`."""
    if lim.window == "month":
        return _sliding_month(lim, now) if lim.sliding else _fixed_month(lim, now, epoch)
    width = UNIT_SECONDS[lim.window] * lim.size
    local = math.floor(epoch) + offset
    if not lim.sliding:
        bucket = local // width
        start = bucket * width - offset
        return bucket, start, start + width - math.floor(epoch) + EXPIRY_GRACE, 1
    sub = width // SUB_BUCKETS
    bucket = local // sub
    span = SUB_BUCKETS + 1
    ttl = (bucket + span) * sub - local + EXPIRY_GRACE
    return bucket, (bucket - SUB_BUCKETS) * sub - offset, ttl, span


def _month_start(month_index: int, now: datetime) -> datetime:
    year, month0 = divmod(month_index, 12)
    return datetime(year, month0 + 1, 1, tzinfo=now.tzinfo)


def _fixed_month(lim: Limit, now: datetime, epoch: float) -> tuple[int, int, int, int]:
    bucket = (now.year * 12 + now.month - 1) // lim.size
    start = _month_start(bucket * lim.size, now).timestamp()
    end = _month_start((bucket + 1) * lim.size, now).timestamp()
    return bucket, int(start), int(math.ceil(end - epoch)) + EXPIRY_GRACE, 1


def _sliding_month(lim: Limit, now: datetime) -> tuple[int, int, int, int]:
    today = now.date()
    back = _months_back(today, lim.size)
    bucket = (today - date(1970, 1, 1)).days
    span = (today - back).days + 1
    start = datetime.combine(back, time(0), tzinfo=now.tzinfo).timestamp()
    # a day bucket is read for as long as some later day's window reaches back to it
    ttl = int(timedelta(days=31 * lim.size + 2).total_seconds())
    return bucket, int(start), ttl, span


def _months_back(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month0 = divmod(index, 12)
    next_first = date(year + (month0 + 1) // 12, (month0 + 1) % 12 + 1, 1)
    last_day = (next_first - timedelta(days=1)).day
    return date(year, month0 + 1, min(day.day, last_day))
