"""The string cap, and the engine behaviour that makes it necessary."""
import json

import durable_rules_engine

from policy.engine.text import MAX_ENGINE_BYTES, cap


def json_bytes(s: str) -> int:
    return len(json.dumps(s, ensure_ascii=False).encode()) - 2


def test_ordinary_strings_are_untouched():
    for s in ("", "hello", "低息贷款\n回T退订", "x" * 10_000):
        assert cap(s) is s


def test_long_strings_keep_the_longest_prefix_that_fits():
    for s in ("x" * 70_000, "中" * 30_000, "\n" * 40_000, "\x01" * 20_000, "a😀" * 20_000):
        out = cap(s)
        assert s.startswith(out)
        assert json_bytes(out) <= MAX_ENGINE_BYTES < json_bytes(s[: len(out) + 1])


def test_durable_compares_strings_by_a_16_bit_length():
    """Why the cap exists: 70,000 'x' equals 4,464 'x' (70,000 % 65,536) inside the engine."""
    handle = durable_rules_engine.create_ruleset("wrap", json.dumps({"r": {"all": [{"m": {"s": "x" * 4464}}]}}))
    try:
        for value, expected in (("x" * 70_000, 0), ("x" * 4464, 0), ("x" * 4465, 1)):
            message = json.dumps({"s": value})
            code, _ = durable_rules_engine.assert_fact(handle, message)
            assert code == expected
            if code == 0:
                durable_rules_engine.retract_fact(handle, message)
    finally:
        durable_rules_engine.delete_ruleset(handle)
