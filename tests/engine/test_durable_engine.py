"""DurableRules against the real C engine: shards, engine failures and recovery, limits."""
import json
import threading

import durable_rules_engine
import pytest

from policy.engine import EngineError, RuleCompileError, RulesClosed
from policy.engine.durable_engine import DurableRules
from policy.engine.oracle import OracleRules
from policy.engine.semantics import read_facts
from policy.rules.conditions import All, Any_, Compare
from tests.engine.rulekit import facts, ids, rule

LONG = facts(**{"message.length": 80, "message.hour": 3})


def two_way_rules(n: int) -> list:
    """n rules that all match LONG, each through two true tests."""
    return [rule(i, Any_((Compare("message.length", "gt", i), Compare("message.hour", "lt", 100 + i))))
            for i in range(n)]


def test_many_rules_are_sharded_and_agree_with_the_oracle():
    rules = [rule(i, Compare("message.length", "gt", i), priority=1 + i % 7) for i in range(200)]
    durable, oracle = DurableRules(rules, "many"), OracleRules(rules, "many")
    assert durable.shard_count >= 5
    for length in (0, 1, 50, 199, 500):
        given = facts(**{"message.length": length})
        assert ids(durable.match(given)) == ids(oracle.match(given))
    assert len(durable.match(facts(**{"message.length": 500}))) == 200
    durable.close()


def test_shards_keep_simultaneous_matches_under_the_engine_limit():
    # 48 rules x 2 true tests: one ruleset would have 96 tests matching at once
    rules = two_way_rules(48)
    assert len(DurableRules(rules, "packed").match(LONG)) == 48


def test_an_engine_error_leaves_the_evaluator_usable():
    # the same rules in one unbounded shard make the engine fail with error 303 (more than 64
    # tests matching at once); a message matching less must still be answered afterwards
    durable = DurableRules(two_way_rules(48), "unbounded", shard_tests=10**6)
    assert durable.shard_count == 1
    with pytest.raises(EngineError, match="303"):
        durable.match(LONG)
    assert not durable._lock.locked()
    few = facts(**{"message.length": 2, "message.hour": 1000})
    assert ids(durable.match(few)) == ["r0", "r1"]
    durable.close()


def test_a_ruleset_deleted_behind_the_evaluator_is_rebuilt():
    durable = DurableRules([rule(0, Compare("message.length", "gt", 1))], "deleted")
    durable_rules_engine.delete_ruleset(durable._shards[0]._handle)
    given = facts(**{"message.length": 2})
    with pytest.raises(EngineError, match="111"):   # ERR_INVALID_HANDLE
        durable.match(given)
    assert ids(durable.match(given)) == ["r0"]
    durable.close()


def test_a_fact_already_held_by_the_engine_is_an_error_then_cleared():
    durable = DurableRules([rule(0, Compare("message.length", "gt", 1))], "held")
    given = facts(**{"message.length": 2})
    payload = durable._payload(read_facts(given, durable._read))
    handle = durable._shards[0]._handle
    assert durable_rules_engine.assert_fact(handle, payload)[0] == 0    # left un-retracted
    with pytest.raises(EngineError, match="code 2"):                    # "already observed"
        durable.match(given)
    assert ids(durable.match(given)) == ["r0"]
    assert ids(durable.match(given)) == ["r0"]
    durable.close()


def test_a_half_read_match_does_not_swallow_later_matches():
    # an action started and never completed leaves the engine's state leased: every later
    # message would silently match nothing; the shard must be replaced instead
    durable = DurableRules([rule(0, Compare("message.length", "gt", 1))], "leased")
    shard = durable._shards[0]
    payload = durable._payload(read_facts(facts(**{"message.length": 5}), durable._read))
    code, state = durable_rules_engine.assert_fact(shard._handle, payload)
    assert code == 0 and durable_rules_engine.start_action_for_state(shard._handle, state)
    durable_rules_engine.retract_fact(shard._handle, payload)
    assert durable.match(facts(**{"message.length": 2})) == []          # what a leased state does
    shard._recover(payload, drained=False)
    assert ids(durable.match(facts(**{"message.length": 2}))) == ["r0"]
    durable.close()


def test_the_lock_is_free_for_other_threads_after_an_error():
    durable = DurableRules(two_way_rules(48), "threads", shard_tests=10**6)
    with pytest.raises(EngineError):
        durable.match(LONG)
    done = []
    t = threading.Thread(target=lambda: done.append(durable.match({})))
    t.start()
    t.join(5)
    assert done == [[]]
    durable.close()


def test_long_strings_are_cut_before_the_engine_wraps_their_length():
    # unbounded, durable sees a 70,000-byte string as equal to its first 4,464 bytes
    durable = DurableRules([rule(0, Compare("account.id", "eq", "x" * 4464))], "wrap")
    assert durable.match(facts(**{"account.id": "x" * 70000})) == []
    assert ids(durable.match(facts(**{"account.id": "x" * 4464}))) == ["r0"]
    durable.close()


def test_a_ruleset_the_engine_refuses_is_a_compile_error():
    # more than 4,096 rules in one ruleset: create_ruleset fails with error 106 (no crash, no hang
    # as long as no node has more than 511 tests under it: 32 hours x 128 lengths)
    rules = [rule(i, All((Compare("message.hour", "eq", i % 32), Compare("message.length", "eq", i))))
             for i in range(4097)]
    with pytest.raises(RuleCompileError, match="106"):
        DurableRules(rules, "too-many", shard_size=5000, shard_tests=10**6, shard_nodes=10**6)


def test_shard_size_must_be_positive():
    with pytest.raises(ValueError):
        DurableRules([], "empty", shard_size=0)


def test_fifteen_groups_per_rule_is_the_engines_own_limit():
    pairs = [{"$and": [{"message__length": i}, {"message__hour": i}]} for i in range(15)]
    with pytest.raises(durable_rules_engine.error, match="113"):   # 16 $and/$or in one rule
        durable_rules_engine.create_ruleset("raw", json.dumps({"r": {"all": [{"m": {"$or": pairs}}]}}))
    fifteen = Any_(tuple(All((Compare("message.length", "eq", i), Compare("message.hour", "eq", i))) for i in range(14)))
    durable = DurableRules([rule(0, fifteen)], "groups")
    assert ids(durable.match(facts(**{"message.length": 3, "message.hour": 3}))) == ["r0"]
    durable.close()


def test_the_match_cache_answers_repeats_counts_them_and_stays_bounded():
    rules = [rule(0, Compare("message.length", "gt", 1)), rule(1, Compare("recipient.carrier", "eq", "cmcc"))]
    plain, cached = DurableRules(rules, "plain"), DurableRules(rules, "cached", cache_size=2)
    cases = [facts(**{"message.length": n, "recipient.carrier": c}) for n in (0, 2) for c in ("cmcc", "cucc")]
    for _ in range(3):
        for given in cases:
            assert ids(cached.match(given)) == ids(plain.match(given))
    assert cached.cache_lookups == 12 and cached.cache_hits == 0   # 4 distinct messages, room for 2
    for _ in range(3):   # evicted by the later messages: one miss, then hits
        assert ids(cached.match(cases[0])) == ["r1"]
    assert cached.cache_lookups == 15 and cached.cache_hits == 2
    assert all(len(c) <= 2 for c in cached._caches)
    assert plain.cache_lookups == 0   # off: nothing counted, nothing kept
    cached.close()
    with pytest.raises(RulesClosed):
        cached.match(cases[1])   # a closed rule set answers nothing, not even from its cache
    plain.close()


def test_an_engine_failure_is_not_cached():
    durable = DurableRules([rule(0, Compare("message.length", "gt", 1))], "held-cached", cache_size=8)
    given = facts(**{"message.length": 2})
    payload = durable._payload(read_facts(given, durable._read))
    assert durable_rules_engine.assert_fact(durable._shards[0]._handle, payload)[0] == 0
    with pytest.raises(EngineError, match="code 2"):
        durable.match(given)
    assert durable._caches == [{}]
    assert ids(durable.match(given)) == ["r0"] and ids(durable.match(given)) == ["r0"]
    assert durable.cache_hits == 1
    durable.close()
