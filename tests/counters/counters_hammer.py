"""Worker for the multi-process tests: one process = one daemon charging the same counters.

Imported by name in spawned children, so it must not import the test modules or conftest.
"""
from __future__ import annotations

import traceback
from datetime import datetime
from zoneinfo import ZoneInfo

from policy.counters import ExclusiveSqliteCounterStore, LimitPlan, RecipientCharge, RedisCounterStore, SqliteCounterStore
from policy.rules.model import Limit

NOW = datetime(2024, 3, 15, 10, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def plan(limit: int) -> LimitPlan:
    return LimitPlan([Limit(id="daily", scope="account", max=limit, window="day")])


def open_store(backend: str, location: str, prefix: str):
    if backend == "sqlite":
        return SqliteCounterStore(location)
    if backend == "sqlite-exclusive":
        return ExclusiveSqliteCounterStore(location)
    return RedisCounterStore(location, prefix=prefix)


def hammer(backend, location, prefix, worker, charges, limit, barrier, results):
    """Charge `charges` times behind `barrier`; put ("ok", accepted) or ("error", traceback)."""
    try:
        store = open_store(backend, location, prefix)
        p = plan(limit)
        barrier.wait(timeout=60)  # both processes start charging together
        accepted = 0
        for i in range(charges):
            rc = RecipientCharge(0, p.increments("900001", "ch1", f"1380000{i:04d}", "h", 1, NOW), 1)
            accepted += len(store.charge(f"p{worker}-{i}", [rc], None, 5, NOW.timestamp()).ok_indexes)
        store.close()
        results.put(("ok", accepted))
    except BaseException:
        barrier.abort()  # do not leave the other process waiting
        results.put(("error", traceback.format_exc()))
