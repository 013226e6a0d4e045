"""Concurrent charges never overshoot a limit or a balance, in one process and across two."""
from __future__ import annotations

import multiprocessing
import threading

import pytest

from policy.counters import RecipientCharge
from tests.counters.counters_hammer import NOW, hammer, plan

LIMIT = 500


def run_threads(n, target):
    barrier = threading.Barrier(n)
    errors = []

    def body(t):
        try:
            barrier.wait(timeout=30)
            target(t)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors


def one(p, i):
    return RecipientCharge(0, p.increments("900001", "ch1", f"1390000{i:04d}", "h", 1, NOW), 1)


def test_eight_threads_accept_exactly_the_limit(store):
    p = plan(LIMIT)
    accepted = [0] * 8

    def work(t):
        for i in range(200):
            accepted[t] += len(store.charge(f"t{t}-{i}", [one(p, i)], None, 5, NOW.timestamp()).ok_indexes)

    run_threads(8, work)
    assert sum(accepted) == LIMIT
    key = one(p, 0).increments[0].key
    assert store.peek([key]) == {key: LIMIT}


def test_concurrent_debits_never_overdraw(store):
    p = plan(10_000)
    store.set_opening_balance("900001", 5 * 300)
    accepted = [0] * 8

    def work(t):
        for i in range(60):
            res = store.charge(f"b{t}-{i}", [one(p, i)], "900001", 5, NOW.timestamp())
            accepted[t] += len(res.ok_indexes)
            assert res.insufficient_balance == (not res.ok_indexes)

    run_threads(8, work)
    assert sum(accepted) == 300 and store.balance("900001") == 0


def test_the_same_request_id_from_many_threads_counts_once(store):
    p = plan(LIMIT)
    replays = []
    run_threads(8, lambda t: replays.append(
        store.charge("same-id", [one(p, 0)], None, 5, NOW.timestamp()).replayed))
    assert sorted(replays) == [False] + [True] * 7
    key = one(p, 0).increments[0].key
    assert store.peek([key]) == {key: 1}


def test_two_processes_sharing_the_store_accept_exactly_the_limit(shared_store_spec):
    store_spec = shared_store_spec
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [ctx.Process(target=hammer,
                         args=(store_spec.backend, store_spec.location, store_spec.prefix,
                               w, 400, LIMIT, barrier, results))
             for w in range(2)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
    assert sum(count for _, count in outcomes) == LIMIT  # 800 attempts, started together
    store = store_spec.open()
    key = plan(LIMIT).increments("900001", "ch1", "x", "h", 1, NOW)[0].key
    assert store.peek([key]) == {key: LIMIT}
    store.close()
