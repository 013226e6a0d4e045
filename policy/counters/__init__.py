"""Limit counters, prepaid balances and request-id idempotency (pipeline step 4).

`make_store` picks the backend from configuration: SQLite in process by default, Redis when
several daemons share counters. Both implement CounterStore with the same semantics, pinned by
the one test suite in tests/counters that runs against each.
"""
from __future__ import annotations

from .keys import LimitPlan, increments_for
from .model import IDEMPOTENCY_TTL, ChargeResult, CounterStore, CounterStoreError, Increment, RecipientCharge
from .redis_store import RedisCounterStore
from .sqlite_store import SqliteCounterStore

BACKENDS = ("sqlite", "redis")


def make_store(backend: str, sqlite_path: str, redis_url: str, *,
               redis_prefix: str = "smsp:") -> CounterStore:
    if backend == "sqlite":
        return SqliteCounterStore(sqlite_path)
    if backend == "redis":
        return RedisCounterStore(redis_url, prefix=redis_prefix)
    raise ValueError(f"unknown counter backend {backend!r}; expected one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS", "IDEMPOTENCY_TTL", "ChargeResult", "CounterStore", "CounterStoreError", "Increment", "LimitPlan",
    "RecipientCharge", "RedisCounterStore", "SqliteCounterStore", "increments_for", "make_store",
]
