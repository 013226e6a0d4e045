"""Limit counters, prepaid balances and request-id idempotency (pipeline step 4).

`make_store` picks the backend from configuration: SQLite in process by default (exclusive mode:
one daemon owns the file, decides from memory and journals with group commit; shared mode: one
transaction per charge, for several processes on one file), Redis when several daemons share
counters. Both implement CounterStore with the same semantics, pinned by
the one test suite in tests/counters that runs against each.
"""
from __future__ import annotations

from .keys import LimitPlan, increments_for
from .model import IDEMPOTENCY_TTL, ChargeResult, CounterStore, CounterStoreError, Increment, RecipientCharge
from .redis_store import RedisCounterStore
from .owner import CounterFileBusy
from .sqlite_exclusive import ExclusiveSqliteCounterStore
from .sqlite_store import SqliteCounterStore

BACKENDS = ("sqlite", "redis")
SQLITE_MODES = ("exclusive", "shared")


def make_store(backend: str, sqlite_path: str, redis_url: str, *,
               redis_prefix: str = "smsp:", sqlite_mode: str = "exclusive",
               idempotency_ttl: int = IDEMPOTENCY_TTL, fold_process: bool = False) -> CounterStore:
    if backend == "sqlite":
        if sqlite_mode == "exclusive":
            return ExclusiveSqliteCounterStore(sqlite_path, idempotency_ttl=idempotency_ttl,
                                               fold_process=fold_process)
        if sqlite_mode == "shared":
            return SqliteCounterStore(sqlite_path, idempotency_ttl=idempotency_ttl)
        raise ValueError(f"unknown SQLite counter mode {sqlite_mode!r}; expected one of {', '.join(SQLITE_MODES)}")
    if backend == "redis":
        return RedisCounterStore(redis_url, prefix=redis_prefix, idempotency_ttl=idempotency_ttl)
    raise ValueError(f"unknown counter backend {backend!r}; expected one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS", "IDEMPOTENCY_TTL", "SQLITE_MODES", "ChargeResult", "CounterFileBusy", "CounterStore",
    "CounterStoreError", "ExclusiveSqliteCounterStore", "Increment", "LimitPlan", "RecipientCharge",
    "RedisCounterStore", "SqliteCounterStore", "increments_for", "make_store",
]
