"""4 threads matching through a RulesHolder while the main thread keeps swapping rule sets."""
import threading

import pytest

from policy.engine.durable_engine import DurableRules
from policy.engine.holder import RulesHolder
from policy.engine.oracle import OracleRules
from policy.rules.conditions import Any_, Compare
from tests.engine.rulekit import facts, ids, rule

THREADS, MATCHES, SWAPS = 4, 5000, 20


def version(tag: int) -> list:
    """Rule sets that answer the same facts differently: every answer tells which version gave it."""
    return [rule(0, Compare("message.length", "ge", 0), priority=100 + tag),
            rule(1, Compare("message.length", "gt", 10 * tag)),
            rule(2, Any_((Compare("message.content", "contains", "贷款"), Compare("message.hour", "lt", tag)))),
            rule(3 + tag, Compare("recipient.blacklisted.global", "eq", bool(tag % 2)))]


FACTS = [facts(**{"message.length": n, "message.content": c, "message.hour": h, "recipient.blacklisted.global": b})
         for n, c, h, b in [(5, "低息贷款", 9, True), (15, "hello", 0, False), (0, "", 2, True), (25, "贷款", 1, False)]]


@pytest.mark.parametrize("cache_size", [0, 64], ids=["uncached", "cached"])
def test_swapping_under_load_gives_only_complete_answers(cache_size):
    expected = {}
    for tag in (0, 1):
        oracle = OracleRules(version(tag), f"v{tag}")
        expected[tag] = [ids(oracle.match(f)) for f in FACTS]
    assert all(expected[0][i] != expected[1][i] for i in range(len(FACTS)))

    holder = RulesHolder(DurableRules(version(0), "v0", cache_size=cache_size))
    wrong, errors, counts, stop = [], [], [0] * THREADS, threading.Event()

    def reader(seed: int) -> None:
        # reads until the main thread has swapped enough times, and at least MATCHES times
        try:
            n = 0
            while n < MATCHES or not stop.is_set():
                i = (seed + n) % len(FACTS)
                got = ids(holder.match(FACTS[i]))
                if got not in (expected[0][i], expected[1][i]):
                    wrong.append((i, got))
                n += 1
            counts[seed] = n
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    for swaps in range(SWAPS):  # every swap happens while readers are matching
        holder.swap(DurableRules(version((swaps + 1) % 2), f"v{swaps}", cache_size=cache_size))
        threads[0].join(0.005)
    stop.set()
    for t in threads:
        t.join()
    holder.current().close()
    assert errors == [] and wrong == []
    assert min(counts) >= MATCHES
