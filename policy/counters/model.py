"""What the counter stores take and give back, and the interface both backends implement."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

IDEMPOTENCY_TTL = 86400  # seconds a request id is remembered: the retry horizon the issue promises


class CounterStoreError(RuntimeError):
    """The charge failed, or its outcome is unknown (Redis reply lost). Retrying with the same
    request id is safe either way: it is applied at most once."""


class StaleFold(CounterStoreError):
    """A fold of the exclusive store's journal whose stretch does not start where the counter
    file records the journal folded to: another process folded it; nothing applied."""


@dataclass(slots=True)
class Increment:
    """One counter a recipient must fit into, and how much it adds.

    `key` names the counter bucket and always ends in ":<bucket index>". A fixed window is a key
    that expires with its window. A sliding window (`span` > 1) reads the sum of the `span`
    consecutive buckets ending at `key` (same prefix, indexes bucket-span+1 .. bucket) and adds
    only to `key`; see policy.counters.keys for the bucket widths. `span` is an addition to the
    original contract; it defaults to 1 (fixed window). `base` and `bucket`, when set, are `key`
    split at its last ":" (LimitPlan sets them; stores then need not split the key again).
    A plain slotted class, not frozen: a frozen dataclass's __init__ costs an object.__setattr__
    per field, for every increment of every recipient.
    """
    key: str
    amount: int
    limit: int
    ttl_seconds: int
    limit_id: str
    code: str
    window_start: int  # epoch seconds: start of the window the value is counted over
    span: int = 1
    base: str = ""
    bucket: int = 0


@dataclass
class RecipientCharge:
    index: int                     # the recipient's position in the request
    increments: list[Increment]
    segments: int                  # billed segments if the recipient is accepted


@dataclass
class ChargeResult:
    ok_indexes: list[int]                          # recipients whose increments were applied
    rejected: dict[int, tuple[str, str]]           # index -> (code, limit_id) of its first breach
    values: list[tuple[str, int, int, str]]        # (key, value_before, limit, limit_id), in read order
    balance_after: int | None = None               # debit account's balance after the charge
    insufficient_balance: bool = False             # True: nothing at all was applied
    replayed: bool = False                         # the request id was charged before
    stored_response: bytes | None = field(default=None, repr=False)
    durable: int = field(default=0, compare=False)  # token for wait_durable(); 0 = already durable


class CounterStore(Protocol):
    # True: charge() itself replays a known request id with its stored answer, so the pipeline
    # need not call recall() first (one store round trip per decision instead of two)
    recall_in_charge: bool

    def charge(self, request_id: str, recipients: list[RecipientCharge], debit_account: str | None,
               price_per_segment: int, now: float, answer=None, wait: bool = True) -> ChargeResult:
        """Check and apply every recipient's increments, and debit, in one atomic step.

        `answer(result) -> bytes`, when given, is called once with the fresh (not replayed)
        result and its bytes are remembered for the request id: in the same transaction with
        SQLite, right after the script with Redis (as remember() would).

        Recipients in order; one is accepted only if all its increments fit (policy.counters.walk).
        With a debit account (prepaid; None = postpaid, never refused) the debit is price x the
        accepted recipients' segments; if the balance is lower nothing at all is applied and
        insufficient_balance is set. The outcome is recorded under request_id in the same
        transaction/script: charging a known id again applies nothing and returns the recorded
        outcome with replayed=True (plus the answer remember()ed for it, if any).
        Raises CounterStoreError when the store cannot answer.

        With wait=False a store that commits in the background (exclusive SQLite) may return
        before the charge is durable; the caller must then call wait_durable(result.durable)
        before it lets the answer out. Other stores are durable on return either way.
        """

    def wait_durable(self, token: int) -> None:
        """Block until the charge that returned `token` is committed; CounterStoreError if it
        never will be (nothing of it applied)."""

    def remember(self, request_id: str, response: bytes, ttl_seconds: int = IDEMPOTENCY_TTL,
                 now: float | None = None) -> None:
        """Attach the serialized answer to a request id; a later charge() replays it."""

    def recall(self, request_id: str, now: float | None = None) -> ChargeResult | None:
        """What charge() would replay for a known request id (replayed=True), else None. Read-only:
        lets the daemon answer a retry before evaluating rules again."""

    def balance(self, account: str) -> int | None: ...

    def top_up(self, account: str, amount: int) -> int: ...

    def set_opening_balance(self, account: str, amount: int) -> bool: ...

    def peek(self, keys: list[str]) -> dict[str, int]: ...

    def close(self) -> None: ...
