"""Random rule sets and random facts: DurableRules and OracleRules must give the same rules, in order.

Rules and facts are built from a Hypothesis-controlled Random (replayable and shrinkable) rather
than from nested strategies, which made generation, not evaluation, the cost of this test.
"""
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.engine.durable_engine import DurableRules, _encode
from policy.engine.oracle import OracleRules
from policy.engine.semantics import condition_problems, read_facts
from policy.rules.conditions import All, Any_, Compare, Not
from policy.vocabulary import FACTS, engine_key
from tests.engine.rulekit import ids, rule

INTS = [-1, 0, 1, 2, 3]
STRINGS = ["", "a", "b", "ab", "ba", "aba", "中", "中文", "a\nb", 'q"', "x\\y", "1069", "9"]
ITEMS = ["x", "y", "z"]
PATTERNS = ["a", "^a", "b$", "a|b", "[ab]+9", r"\d", r"^\d+$", "中.", "aba", r"a\nb", r"\\", "^$",
            "(ab)*a", r"[a-c]{2}", r"\s", '"', r"b\Z", "(a|中)文"]
# a few facts of every type, so that rules often test the facts a facts dict has
NAMES = ["recipient.blacklisted.global", "message.has_signature", "message.length", "message.hour",
         "account.id", "message.content", "recipient.number", "message.keyword_groups", "recipient.lists"]
OPS = {
    "bool": ["exists", "eq", "ne"],
    "int": ["exists", "eq", "ne", "lt", "le", "gt", "ge", "in", "not_in"],
    "str": ["exists", "eq", "ne", "in", "not_in", "contains", "matches"],
    "list": ["exists", "contains"],
}
POOL = {"bool": [False, True], "int": INTS, "str": STRINGS, "list": ITEMS}


def condition(p: random.Random, depth: int = 0):
    shape = p.choice(["leaf", "leaf", "all", "any", "not"]) if depth < 3 else "leaf"
    if shape in ("all", "any"):
        items = tuple(condition(p, depth + 1) for _ in range(p.choice([1, 2, 3])))
        return All(items) if shape == "all" else Any_(items)
    if shape == "not":
        return Not(condition(p, depth + 1))
    name = p.choice(NAMES)
    type_ = FACTS[name].type
    op = p.choice(OPS[type_])
    if op == "exists":
        value = p.choice([True, False])
    elif op in ("in", "not_in"):
        value = tuple(p.choice(POOL[type_]) for _ in range(p.choice([1, 2, 3, 5])))
    elif op == "matches":
        value = p.choice(PATTERNS)
    elif op == "contains":
        value = p.choice(STRINGS[1:] if type_ == "str" else ITEMS)
    else:
        value = p.choice(POOL[type_])
    return Compare(name, op, value)


def fact_dict(p: random.Random) -> dict:
    out = {}
    for name in NAMES:
        if p.choice([True, False, True]):
            type_ = FACTS[name].type
            if type_ == "list":
                value = [item for item in ITEMS if p.choice([True, False])]
            elif type_ == "str":
                value = p.choice(STRINGS) + p.choice(["", "", "a", "9", "文", "\n"]) + p.choice(STRINGS)
            else:
                value = p.choice(POOL[type_])
            out[engine_key(name)] = value
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(10, 60), st.integers(1, 6), st.sampled_from([48, 7]))
def test_durable_and_oracle_agree(rng, n_rules, n_facts, shard_size):
    conditions = [c for c in (condition(rng) for _ in range(n_rules)) if not condition_problems(c)]
    rules = [rule(i, c, rng.randint(1, 4), rng.choice(["enforce", "shadow"])) for i, c in enumerate(conditions)]
    durable = DurableRules(rules, "prop", shard_size)
    cached = DurableRules(rules, "prop-cached", shard_size, cache_size=3)
    oracle = OracleRules(rules, "prop")
    try:
        seen = []
        for _ in range(n_facts):
            given_facts = fact_dict(rng)
            want = ids(oracle.match(given_facts))
            assert ids(durable.match(given_facts)) == want, (given_facts, rules)
            seen.append((given_facts, want))
            for earlier, answer in seen[-4:]:   # hits, misses and evictions of a small cache
                assert ids(cached.match(earlier)) == answer, (earlier, rules)
                assert ids(cached.match(earlier, cached.message_part(earlier))) == answer, (earlier, rules)
            # the pipeline's form: the message facts' share computed once, the recipient's own
            # facts per call (message facts left in that dict are ignored, so garble them)
            own = {k: (v if FACTS[k.replace("__", ".")].stage == "recipient" else 12345)
                   for k, v in given_facts.items()}
            part = durable.message_part(given_facts)
            assert ids(durable.match(own, part)) == want, (given_facts, rules)
            # the generated readers send each shard what semantics.read_facts reads of the fields
            # its rules test: byte for byte the reference encoding, or in the split form the
            # same JSON object
            reference = json.loads(durable._payload(read_facts(given_facts, durable._read)))
            for fields, whole, split in zip(durable._fields, durable._payloads(given_facts),
                                            durable._payloads(own, part), strict=True):
                mine = {k: v for k, v in reference.items() if k in fields or k == "_m"}
                assert whole == _encode(mine) and json.loads(split) == mine
            # the cache's keys encode to the very messages the readers write
            for k, key in enumerate(cached._key_all(given_facts)):
                assert cached._enc_all[k](key) == cached._fill_all(given_facts)[k]
            for k, (m, r) in enumerate(zip(cached._key_m(given_facts), cached._key_r(own))):
                assert cached._enc_m[k](m) == cached._fill_m(given_facts)[k]
                assert cached._enc_r[k](r) == cached._fill_r(own)[k]
    finally:
        durable.close()
        cached.close()
