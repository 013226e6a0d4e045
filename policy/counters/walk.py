"""The decision rule shared by the SQLite stores and mirrored line for line by the Redis script.

Recipients are taken in request order. One is accepted only if every increment fits
(value + amount <= limit), where value counts what earlier accepted recipients of the same call
add; reading stops at its first breach, whose code and limit it gets. A rejected recipient adds
nothing. The debit is price x segments of the accepted recipients.
"""
from __future__ import annotations

from .model import RecipientCharge


class Walk:
    __slots__ = ("ok", "rejected", "values", "adds", "ttls", "segments")

    def __init__(self, recipients: list[RecipientCharge], stored: dict[str, int]):
        ok: list[int] = []
        rejected: dict[int, tuple[str, str]] = {}
        values: list[tuple[str, int, int, str]] = []
        adds: dict[str, int] = {}       # key -> total amount to apply
        ttls: dict[str, int] = {}       # key -> ttl of its bucket
        self.ok, self.rejected, self.values, self.adds, self.ttls = ok, rejected, values, adds, ttls
        note = values.append
        segments = 0
        for rc in recipients:
            incs = rc.increments
            mine: dict[str, int] = {}
            for inc in incs:
                key = inc.key
                before = stored[key] + adds.get(key, 0) + mine.get(key, 0)
                note((key, before, inc.limit, inc.limit_id))
                if before + inc.amount > inc.limit:  # the first breach decides; nothing added
                    rejected[rc.index] = (inc.code, inc.limit_id)
                    break
                mine[key] = mine.get(key, 0) + inc.amount
            else:
                for key, amount in mine.items():
                    adds[key] = adds.get(key, 0) + amount
                for inc in incs:
                    ttls[inc.key] = inc.ttl_seconds
                ok.append(rc.index)
                segments += rc.segments
        self.segments = segments


def bucket_ranges(recipients: list[RecipientCharge]) -> dict[str, tuple[str, int, int]]:
    """key -> (base, first bucket, last bucket) of every counter a charge reads: a sliding
    window's value is the sum of its `span` sub-buckets ending at the key's own bucket."""
    reads: dict[str, tuple[str, int, int]] = {}
    for rc in recipients:
        for inc in rc.increments:
            key = inc.key
            if key not in reads:
                if inc.base:
                    base, hi = inc.base, inc.bucket
                else:
                    base, _, bucket = key.rpartition(":")
                    hi = int(bucket)
                reads[key] = (base, hi - inc.span + 1, hi)
    return reads
