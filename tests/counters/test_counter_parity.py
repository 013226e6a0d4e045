"""SQLite (both modes) and Redis give identical answers and leave identical counters for any charge sequence."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.counters import ExclusiveSqliteCounterStore, LimitPlan, RecipientCharge, RedisCounterStore, SqliteCounterStore
from policy.rules.model import LIMIT_SCOPES, Limit

T0 = datetime(2024, 3, 15, 10, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

limits = st.lists(
    st.builds(
        Limit,
        id=st.sampled_from(["l1", "l2", "l3", "l4"]),
        scope=st.sampled_from(sorted(LIMIT_SCOPES)),
        max=st.integers(0, 4),
        window=st.sampled_from(["minute", "hour", "day", "month"]),
        sliding=st.booleans(),
        unit=st.sampled_from(["messages", "segments"]),
    ),
    max_size=4, unique_by=lambda lim: lim.id)
recipient = st.tuples(st.sampled_from(["13800000001", "13800000002", "13800000003"]),
                      st.sampled_from(["h1", "h2"]), st.sampled_from(["ch1", "ch2"]), st.integers(1, 3))
charges = st.lists(st.tuples(st.lists(recipient, min_size=1, max_size=4),
                             st.sampled_from([None, "prepaid"]),
                             st.integers(0, 90),          # seconds after T0
                             st.integers(0, 5)),          # request id: repeats are retries
                   min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits=limits, charges=charges, opening=st.integers(0, 40))
def test_backends_agree(redis_url, tmp_path, limits, charges, opening):
    plan = LimitPlan(limits)
    sqlite = SqliteCounterStore(str(tmp_path / f"{uuid.uuid4().hex}.db"))
    redis_store = RedisCounterStore(redis_url, prefix=f"parity{uuid.uuid4().hex[:10]}:")
    exclusive = ExclusiveSqliteCounterStore(str(tmp_path / f"{uuid.uuid4().hex}.db"))
    try:
        for store in (sqlite, redis_store, exclusive):
            store.set_opening_balance("prepaid", opening)
        touched = set()
        for recipients, debit, offset, rid in charges:
            now = T0 + timedelta(seconds=offset)
            rcs = [RecipientCharge(i, plan.increments("900001", ch, number, content, seg, now), seg)
                   for i, (number, content, ch, seg) in enumerate(recipients)]
            touched.update(inc.key for rc in rcs for inc in rc.increments)
            a = sqlite.charge(f"r{rid}", rcs, debit, 3, now.timestamp())
            b = redis_store.charge(f"r{rid}", rcs, debit, 3, now.timestamp())
            c = exclusive.charge(f"r{rid}", rcs, debit, 3, now.timestamp())
            assert a == b == c
        assert sqlite.peek(sorted(touched)) == redis_store.peek(sorted(touched)) == exclusive.peek(sorted(touched))
        assert sqlite.balance("prepaid") == redis_store.balance("prepaid") == exclusive.balance("prepaid")
    finally:
        exclusive.close()
        sqlite.close()
        redis_store.close()
