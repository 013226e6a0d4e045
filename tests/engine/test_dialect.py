"""The regex dialect: translation, refusals, durable_rules' own regex bugs, and re.search agreement."""
import json
import re

import durable_rules_engine
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.engine.dialect import PATTERN_FLAGS, DialectError, to_durable
from policy.engine.durable_engine import DurableRules
from policy.engine.textmatch import TextMatcher
from policy.rules.conditions import Compare
from tests.engine.rulekit import facts, rule


@pytest.mark.parametrize("pattern,durable", [
    ("loan", ".*loan.*"),
    ("贷款", ".*贷款.*"),
    (r"^1069\d+$", "1069[0-9]+\ufdda?"),           # $ also before a final newline
    (r"\A1069\d{4}\Z", "1069[0-9]{4}"),
    (r"bit\.ly/\w+", ".*bit%.ly/[0-9A-Z_a-z].*"),     # trailing \w+ trimmed to \w: same search
    (r"\d?x", ".*x.*"),                              # a leading optional part never matters
    ("100%", ".*100%%.*"),
    (r"[%\]^-]", ".*[%%%]^-].*"),
    (r"[\^-]", ".*(^|-).*"),
    ("a|^b", "(.*a.*|b.*)"),
    (r"x(ab){2,3}c", ".*x(ab){2,3}c.*"),
    (r"(ab){2,3}c", ".*(ab){2}c.*"),
    ("a.b", ".*a.b.*"),
    ('"q"\n', ".*\U0001fffeq\U0001fffe\ufdda.*"),  # characters JSON escapes use their engine form
    (r"[\s\S]", ".*..*"),
    ("(|a)b", ".*((a)?)b.*"),
])
def test_translation(pattern, durable):
    assert to_durable(pattern) == durable


@pytest.mark.parametrize("pattern,message", [
    ("(验证码", "not a valid regular expression"),
    ("[^0-9]", "negated classes"),
    (r"\D", "negated classes"),
    (r"\W+", "negated classes"),
    ("[一-龥]", "20,902 characters"),
    (r"\d{101}", "above 100"),
    ("a*?b", "lazy quantifiers"),
    ("a++", "possessive"),
    ("(?>a)", "atomic"),
    ("(?i)free", "inline flags (?i)"),
    ("(?m)^a", "inline flags (?m)"),
    ("(?P<code>\\d+)", "named groups"),
    (r"\bfoo", "word boundaries"),
    (r"(a)\1", "backreferences"),
    ("(?=a)b", "lookahead"),
    ("(?<!a)b", "lookbehind"),
    ("a^b", "anchors"),
    (r"^\Z", "only matches the empty text"),
    ("\ufdd0", "noncharacter"),
    ("((((x{100}){100}){100}){100})", "100,000,000 character positions"),
    ("(x{100}){51}", "5,100 character positions"),
    ("(a|b{100}){60}", "at most 5,000"),
])
def test_refusals_say_why(pattern, message):
    with pytest.raises(DialectError, match=re.escape(message)):
        to_durable(pattern)


def durable_says(pattern: str, value: str) -> bool:
    handle = durable_rules_engine.create_ruleset("rx", json.dumps({"r": {"all": [{"m": {"$mt": {"s": pattern}}}]}},
                                                                  ensure_ascii=False))
    try:
        message = json.dumps({"s": value}, ensure_ascii=False)
        code, _ = durable_rules_engine.assert_fact(handle, message)
        if code == 0:
            durable_rules_engine.retract_fact(handle, message)
        return code == 0
    finally:
        durable_rules_engine.delete_ruleset(handle)


@pytest.mark.parametrize("pattern,value", [
    ("aba", "abab"),           # a self-overlapping literal
    ("aaa", "aaaa"),
    ("中文中", "中文中文"),
    ("[ab]1", "a1b"),          # a class, then a class member after the match
    ("a|bx", "a中b"),
])
def test_durable_rules_regex_compiler_is_wrong_here(pattern, value):
    """Why the durable evaluator runs text tests in Python: if this starts failing, durable_rules'
    regex compiler changed and handing patterns to it can be reconsidered."""
    assert re.search(pattern, value, PATTERN_FLAGS)
    assert not durable_says(to_durable(pattern), value)
    assert TextMatcher([("matches", pattern)]).found(value) == {0}


ATOMS = ["a", "b", "c", "1", ".", r"\d", r"\s", r"\w", "[ab]", "[a-c]", "[0-9]", "%", r"\.", '"', "中",
         r"\n", "-", r"\$", r"\^", " ", r"\\", "[^a]", r"\D", "😀"]
QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{2,}", "*?"]


def sequences(inner):
    item = st.one_of(st.sampled_from(ATOMS), inner.map(lambda p: f"({p})"))
    return st.lists(st.tuples(item, st.sampled_from(QUANTIFIERS)).map("".join), min_size=1, max_size=4).map("".join)


patterns = st.tuples(
    st.sampled_from(["", "", "^", r"\A"]),
    st.recursive(sequences(st.nothing()),
                 lambda inner: st.one_of(sequences(inner), st.tuples(sequences(inner), sequences(inner)).map("|".join)),
                 max_leaves=6),
    st.sampled_from(["", "", "$", r"\Z"]),
).map("".join)
# mostly the characters the atoms name, so that patterns often match, and often a final newline
texts = st.tuples(st.text(alphabet=list("aaabbc1119 \n中中\"\\%.-^$😀_"), max_size=10),
                  st.sampled_from(["", "", "\n", "a", "1"])).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(patterns, min_size=1, max_size=5), st.lists(texts, min_size=5, max_size=20))
def test_textmatch_agrees_with_re_search(pats, values):
    accepted = []
    for p in pats:
        try:
            re.compile(p, PATTERN_FLAGS)
            to_durable(p)
        except (re.error, DialectError):
            continue
        accepted.append(p)
    matcher = TextMatcher([("matches", p) for p in accepted])
    for value in values + [v + "\n" for v in values]:   # $ also matches before a final newline
        expected = {i for i, p in enumerate(accepted) if re.search(p, value, PATTERN_FLAGS)}
        assert matcher.found(value) == expected, (accepted, value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(patterns, st.lists(texts, min_size=1, max_size=10))
def test_durable_rules_matches_agrees_with_re_search(pattern, values):
    try:
        to_durable(pattern)
    except DialectError:
        return
    durable = DurableRules([rule(0, Compare("message.content", "matches", pattern))], "rx")
    for value in values:
        assert bool(durable.match(facts(**{"message.content": value}))) == bool(re.search(pattern, value, PATTERN_FLAGS))
    durable.close()


def test_textmatch_takes_linear_time_where_re_backtracks():
    import time
    matcher = TextMatcher([("matches", "(a+)+b"), ("matches", r"\d+\d+\d+x")])
    value = "a" * 40 + "1" * 600
    start = time.perf_counter()
    assert matcher.found(value) == set()
    assert time.perf_counter() - start < 0.5   # re.search("(a+)+b", "a" * 40) takes hours


def test_textmatch_literal_gates_skip_the_walk_without_changing_answers():
    pats = ["[{][A-Za-z_][A-Za-z0-9_]*[}]", "(t|dwz|url)[.]cn/[0-9a-z]+", "ab*c", "x(ab)+y|q[.]z", "^ab$"]
    matcher = TextMatcher([("matches", p) for p in pats])
    # every alternative needs a literal, so texts with none of them never reach the automaton
    assert matcher._gates == [("{", "}"), (".cn/",), ("a", "c"), ("x", "y"), ("q.z",), ("ab",)]
    for value in ["", "您好{name}", "{ }", "}{a}", "dwz.cn/", "dwz.cn/x", "t.cn/9", "ac", "ca", "abbbc",
                  "xy", "xaby", "yabx", "q.z", "q-z", "ab", "ab\n", "ab\n\n", "c{a", "中文 url.cn/ab 回T"]:
        expected = {i for i, p in enumerate(pats) if re.search(p, value, PATTERN_FLAGS)}
        assert matcher.found(value) == expected, value
    assert TextMatcher([("matches", r"\d{6}"), ("matches", "ab")])._gates is None  # \d{6} needs no literal


def test_nested_counts_are_bounded_and_what_passes_compiles_fast():
    # textmatch copies a counted body once per count: ((x{100}){100}){100} took minutes and GBs
    import time
    for pattern in ["(x{100}){50}", "(ab|cd){1,100}[0-9]{100}", "^((a{0,10}){0,10}){0,10}y$"]:
        to_durable(pattern)
        start = time.monotonic()
        matcher = TextMatcher([("matches", pattern)])
        matcher.found("x" * 1000)
        assert time.monotonic() - start < 5, pattern
