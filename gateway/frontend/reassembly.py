"""Long-SMS reassembly: parts are collected until the message is whole, then evaluated once.

A message is identified by (account, Src_Id, destinations, reference, total) — the key of the
issue — so two concurrent long messages of one customer never mix, and parts may arrive in any
order and on any connection of the account.

Durability: every part answered with SUBMIT_RESP Result 0 is in the store's `parts` table
first, and leaves it only in the transaction that stores the evaluated message (or its
failure reports). The in-memory index here is rebuilt from that table at start, so a restart
of the front-end loses no part; the timeout then runs from the last part's arrival as stored.

The part that completes a message is not buffered: it is evaluated together with the stored
ones and, if the daemon cannot answer, refused with Result 8 so the customer sends it again.

A message that is finished (evaluated, or timed out) is remembered for `timeout` seconds with
a digest of each of its parts: a late part that repeats a part of a message finished under its
key within that time (same part number, Msg_Fmt and payload) is a duplicate (MA:0013). Any
other part under the same key starts a new message: customers' 8-bit references wrap after 256
long messages, so a new long SMS to the same number with the same reference and total soon
after an earlier one is normal.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum

from ..store import GatewayStore, NewReport, Part

TIMEOUT_STAT = "MA:0026"      # 分条发送，组包超时
SEQUENCE_STAT = "MA:0013"     # 非法错误的包时序: duplicate or inconsistent part


class Offer(Enum):
    BUFFERED = "buffered"     # stored, more parts to come
    REFUSED = "refused"       # duplicate or inconsistent: report MA:0013 for this part
    COMPLETE = "complete"     # this part completes the message: evaluate it


@dataclass
class _Assembly:
    parts: dict[int, Part] = field(default_factory=dict)
    last: float = 0.0
    evaluating: bool = False
    completing: Part | None = None   # the part being evaluated with the stored ones


@dataclass
class _Closed:
    """A finished message: when, and a digest of each part it had, by part number."""
    at: float
    digests: dict[int, bytes]


def _digest(part: Part) -> bytes:
    return hashlib.blake2b(bytes([part.msg_fmt]) + part.payload, digest_size=16).digest()


def message_key(account_id: str, src_id: str, dests: tuple[str, ...], ref: int, total: int) -> str:
    return "\x1f".join((account_id, src_id, ",".join(dests), str(ref), str(total)))


def part_reports(parts: list[Part], stat: str, now: float) -> list[NewReport]:
    """One report per (part, recipient): each part has its own Msg_Id per recipient."""
    return [NewReport(p.account_id, p.msg_ids[i], dest, stat, p.received, now,
                      p.registered_delivery, p.src_id, p.service_id)
            for p in parts for i, dest in enumerate(p.dests)]


class Reassembler:
    def __init__(self, store: GatewayStore, timeout: float):
        self.store = store
        self.timeout = timeout
        self._open: dict[str, _Assembly] = {}
        # keys completed (or expired) lately, with their parts' digests (one entry per message
        # finished under the key): a late copy of one of their parts is a duplicate, not the
        # start of a new message that would time out; any other part starts a new message.
        self._closed: dict[str, list[_Closed]] = {}

    def load(self) -> int:
        """Rebuild the index from the store (at start). Returns the number of parts."""
        parts = self.store.buffered_parts()
        for p in parts:
            a = self._open.setdefault(p.key, _Assembly())
            a.parts[p.seq] = p
            a.last = max(a.last, p.received)
        return len(parts)

    def offer(self, part: Part) -> tuple[Offer, list[Part]]:
        """Take one part. COMPLETE returns every part of the message in order (this one
        included, not stored); call `settle` once the outcome is stored or `reopen` when the
        evaluation failed."""
        closed = self._closed.get(part.key)
        if closed:
            digest = _digest(part)
            if any(c.digests.get(part.seq) == digest for c in closed):
                return Offer.REFUSED, []
        a = self._open.get(part.key)
        if a is not None:
            known = next(iter(a.parts.values()))
            if a.evaluating or part.seq in a.parts or part.msg_fmt != known.msg_fmt:
                return Offer.REFUSED, []
        if a is not None and len(a.parts) + 1 == part.total:  # callers send total >= 2
            a.evaluating, a.completing = True, part
            return Offer.COMPLETE, sorted([*a.parts.values(), part], key=lambda p: p.seq)
        self.store.buffer_part(part)  # first: an exception leaves the index untouched
        if a is None:
            a = self._open[part.key] = _Assembly()
        a.parts[part.seq] = part
        a.last = max(a.last, part.received)
        return Offer.BUFFERED, []

    def reopen(self, key: str) -> None:
        """The completing part could not be evaluated; the stored parts wait for it again."""
        a = self._open[key]
        a.evaluating, a.completing = False, None

    def settle(self, key: str, now: float) -> None:
        """The message's outcome is stored and its parts are gone from the store."""
        a = self._open.pop(key)
        parts = [*a.parts.values(), *([a.completing] if a.completing is not None else [])]
        self._closed.setdefault(key, []).append(_Closed(now, {p.seq: _digest(p) for p in parts}))

    def expired(self, now: float) -> list[tuple[str, list[Part]]]:
        """Messages whose last part arrived more than `timeout` ago (and that are not being
        evaluated), with their parts; `settle` each once its MA:0026 reports are stored."""
        horizon = now - self.timeout
        for key in [k for k, c in self._closed.items() if c[0].at < horizon]:
            kept = [c for c in self._closed[key] if c.at >= horizon]
            if kept:
                self._closed[key] = kept
            else:
                del self._closed[key]
        return [(key, sorted(a.parts.values(), key=lambda p: p.seq))
                for key, a in self._open.items() if not a.evaluating and a.last < horizon]

    def __len__(self) -> int:
        return len(self._open)
