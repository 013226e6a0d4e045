"""4 threads matching through a RulesHolder while the main thread keeps swapping rule sets."""
import threading

from policy.engine.durable_engine import DurableRules
from policy.engine.holder import RulesHolder
from policy.engine.oracle import OracleRules
from policy.rules.conditions import Any_, Compare
from tests.engine.rulekit import facts, ids, rule

THREADS, MATCHES = 4, 5000


def version(tag: int) -> list:
    """Rule sets that answer the same facts differently: every answer tells which version gave it."""
    return [rule(0, Compare("message.length", "ge", 0), priority=100 + tag),
            rule(1, Compare("message.length", "gt", 10 * tag)),
            rule(2, Any_((Compare("message.content", "contains", "贷款"), Compare("message.hour", "lt", tag)))),
            rule(3 + tag, Compare("recipient.blacklisted.global", "eq", bool(tag % 2)))]


FACTS = [facts(**{"message.length": n, "message.content": c, "message.hour": h, "recipient.blacklisted.global": b})
         for n, c, h, b in [(5, "低息贷款", 9, True), (15, "hello", 0, False), (0, "", 2, True), (25, "贷款", 1, False)]]


def test_swapping_under_load_gives_only_complete_answers():
    expected = {}
    for tag in (0, 1):
        oracle = OracleRules(version(tag), f"v{tag}")
        expected[tag] = [ids(oracle.match(f)) for f in FACTS]
    assert all(expected[0][i] != expected[1][i] for i in range(len(FACTS)))

    holder = RulesHolder(DurableRules(version(0), "v0"))
    wrong, errors, done = [], [], threading.Event()

    def reader(seed: int) -> None:
        try:
            for n in range(MATCHES):
                i = (seed + n) % len(FACTS)
                got = ids(holder.match(FACTS[i]))
                if got not in (expected[0][i], expected[1][i]):
                    wrong.append((i, got))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    swaps = 0
    while any(t.is_alive() for t in threads):
        holder.swap(DurableRules(version((swaps + 1) % 2), f"v{swaps}"))
        swaps += 1
        threads[0].join(0.005)
    for t in threads:
        t.join()
    holder.current().close()
    assert errors == [] and wrong == []
    assert swaps >= 10
