"""RedisCounterStore.charge_many: a batch in one script call decides exactly as the same charges
made one by one, keeps each charge's error to itself, survives a script flush and stores the
answers retries get."""
from __future__ import annotations

import uuid

import pytest
import redis

from policy.counters import LimitPlan, RedisCounterStore, redis_store
from policy.counters.model import CounterStoreError
from policy.rules.model import Limit
from tests.counters.test_counter_store import N1, N2, N3, T0, rc

pytestmark = pytest.mark.redis

PLAN = LimitPlan([Limit(id="num", scope="account_number", max=2, window="day"),
                  Limit(id="daily", scope="account", max=5, window="day")])


@pytest.fixture
def pair(redis_url):
    """Two stores on one server with their own prefixes: one charged by batch, one call by call."""
    stores = [RedisCounterStore(redis_url, prefix=f"b{uuid.uuid4().hex[:10]}:") for _ in range(2)]
    yield stores
    for s in stores:
        s.close()


def jobs_for(specs, answer=None):
    """(request id, numbers, debit) -> charge_many jobs."""
    return [(rid, [rc(PLAN, index=i, number=n) for i, n in enumerate(numbers)], debit, 5,
             T0.timestamp(), answer) for rid, numbers, debit in specs]


SPECS = [("a", [N1], None), ("b", [N1, N2], None), ("c", [N1], None), ("d", [N2, N2], None),
         ("a", [N1], None),          # the same request id again: replayed, not counted
         ("e", [N3], "900001"), ("f", [N1], None)]


@pytest.mark.parametrize("per_call", [100, 2], ids=["one-call", "calls-of-2"])
def test_a_batch_decides_as_the_same_charges_one_by_one(pair, per_call, monkeypatch):
    monkeypatch.setattr(redis_store, "JOBS_PER_CALL", per_call)   # 2: the batch spans 4 calls
    batched, single = pair
    batched.top_up("900001", 100)
    single.top_up("900001", 100)
    many = batched.charge_many(jobs_for(SPECS))
    one_by_one = [single.charge(rid, recs, debit, price, now)
                  for rid, recs, debit, price, now, _a in jobs_for(SPECS)]
    fields = lambda r: (r.ok_indexes, r.rejected, r.values, r.balance_after,  # noqa: E731
                        r.insufficient_balance, r.replayed)
    assert [fields(r) for r in many] == [fields(r) for r in one_by_one]
    # the case that makes the order matter: "c" is refused by what "a" and "b" counted
    assert many[2].rejected == {0: ("MA:0022", "num")} and many[4].replayed
    keys = [i.key for i in rc(PLAN, number=N1).increments] + [rc(PLAN, number=N2).increments[0].key]
    assert batched.peek(keys) == single.peek(keys)
    assert batched.balance("900001") == single.balance("900001") == 95


def test_a_failing_charge_fails_alone_and_the_answers_are_kept_for_retries(pair, redis_url):
    store = pair[0]
    client = redis.Redis.from_url(redis_url)
    # a counter key holding a non-number: the charge reading it raises inside the script
    bad = rc(PLAN, number=N2).increments[0].key
    client.set(store.prefix + "c:" + bad, "not a number")
    out = store.charge_many(jobs_for([("x", [N1], None), ("y", [N2], None), ("z", [N1], None)],
                                     answer=lambda res: b"answer-%d" % res.values[0][1]))
    assert isinstance(out[1], CounterStoreError) and "'y'" in str(out[1])
    assert "attempt to perform arithmetic" in str(out[1])   # the script's own error reaches the caller
    assert out[0].ok_indexes == [0] and out[2].ok_indexes == [0]
    assert out[2].values[0][1] == 1    # z saw x's charge
    store.charge_many(jobs_for([("w", [N1], None)]))   # charged without an answer to keep
    # the next command on the connection reads the answers' reply first; each replay gets its
    # own answer back (or none), whatever the order
    again = store.charge_many(jobs_for([("z", [N1], None), ("w", [N1], None), ("x", [N1], None)]))
    assert [r.replayed for r in again] == [True, True, True]
    assert [r.stored_response for r in again] == [b"answer-1", None, b"answer-0"]
    assert [r.values[0][1] for r in again] == [1, 2, 0]   # and the counters it was decided on
    client.close()


def test_a_flushed_script_cache_is_reloaded_and_the_batch_runs_once(pair, redis_url):
    store = pair[0]
    client = redis.Redis.from_url(redis_url)
    client.script_flush()
    out = store.charge_many(jobs_for([("p", [N1], None), ("q", [N1], None)]))
    assert [r.ok_indexes for r in out] == [[0], [0]]
    assert store.peek([rc(PLAN, number=N1).increments[0].key]) == {rc(PLAN, number=N1).increments[0].key: 2}
    client.close()
