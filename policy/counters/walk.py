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
        self.ok: list[int] = []
        self.rejected: dict[int, tuple[str, str]] = {}
        self.values: list[tuple[str, int, int, str]] = []
        self.adds: dict[str, int] = {}       # key -> total amount to apply
        self.ttls: dict[str, int] = {}       # key -> ttl of its bucket
        self.segments = 0
        adds = self.adds
        for rc in recipients:
            mine: dict[str, int] = {}
            breach = None
            for inc in rc.increments:
                key = inc.key
                before = stored[key] + adds.get(key, 0) + mine.get(key, 0)
                self.values.append((key, before, inc.limit, inc.limit_id))
                if before + inc.amount > inc.limit:
                    breach = inc
                    break
                mine[key] = mine.get(key, 0) + inc.amount
            if breach is not None:
                self.rejected[rc.index] = (breach.code, breach.limit_id)
                continue
            for key, amount in mine.items():
                adds[key] = adds.get(key, 0) + amount
            for inc in rc.increments:
                self.ttls[inc.key] = inc.ttl_seconds
            self.ok.append(rc.index)
            self.segments += rc.segments


def bucket_ranges(recipients: list[RecipientCharge]) -> dict[str, tuple[str, int, int]]:
    """key -> (base, first bucket, last bucket) of every counter a charge reads: a sliding
    window's value is the sum of its `span` sub-buckets ending at the key's own bucket."""
    reads: dict[str, tuple[str, int, int]] = {}
    for rc in recipients:
        for inc in rc.increments:
            if inc.key not in reads:
                base, _, bucket = inc.key.rpartition(":")
                hi = int(bucket)
                reads[inc.key] = (base, hi - inc.span + 1, hi)
    return reads
