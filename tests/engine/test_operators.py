"""Each operator, absent facts, `not`, types and ordering: the same answers from both evaluators."""
import pytest

from policy.engine import FactTypeError, RuleCompileError, RulesClosed
from policy.rules.conditions import All, Any_, Compare, Not
from tests.engine.rulekit import ENGINES, facts, ids, matches_one, rule

engines = pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.__name__)

CASES = [
    # fact, op, value, given (None = absent), expected
    ("message.length", "eq", 70, 70, True),
    ("message.length", "eq", 70, 71, False),
    ("message.length", "ne", 70, 71, True),
    ("message.length", "ne", 70, 70, False),
    ("message.length", "ne", 70, None, False),          # ne on an absent fact is false
    ("message.length", "lt", 70, 69, True),
    ("message.length", "lt", 70, 70, False),
    ("message.length", "le", 70, 70, True),
    ("message.length", "le", 70, 71, False),
    ("message.length", "gt", 70, 71, True),
    ("message.length", "gt", 70, 70, False),
    ("message.length", "ge", 70, 70, True),
    ("message.length", "ge", -1, -2, False),
    ("message.length", "lt", 70, None, False),
    ("account.id", "eq", "900001", "900001", True),
    ("account.id", "eq", "900001", "900002", False),
    ("account.id", "in", ("900001", "900002"), "900002", True),
    ("account.id", "in", ("900001", "900002"), "900003", False),
    ("account.id", "in", ("900001",), None, False),
    ("account.id", "not_in", ("900001", "900002"), "900003", True),
    ("account.id", "not_in", ("900001", "900002"), "900001", False),
    ("account.id", "not_in", ("900001",), None, False),  # like ne: absent is false
    ("message.hour", "in", (8, 9, 10), 9, True),
    ("message.hour", "not_in", (8, 9, 10), 11, True),
    ("message.content", "contains", "贷款", "低息贷款马上办", True),
    ("message.content", "contains", "贷款", "低息借钱", False),
    ("message.content", "contains", 'a"b', 'x a"b y', True),            # JSON-escaped characters
    ("message.content", "contains", "a\nb", "xa\nb", True),
    ("message.content", "contains", "n", "a\nb", False),                 # not fooled by the escape "\n"
    ("message.content", "contains", "x", None, False),
    ("message.keyword_groups", "contains", "gambling", ["loan", "gambling"], True),
    ("message.keyword_groups", "contains", "gambling", ["loan"], False),
    ("message.keyword_groups", "contains", "gambling", [], False),
    ("message.keyword_groups", "contains", "gambling", None, False),
    ("message.content", "matches", r"\d{6}", "验证码 123456，5分钟", True),
    ("message.content", "matches", r"\d{6}", "验证码 12345，5分钟", False),
    ("message.content", "matches", r"^【", "【云片】hi", True),
    ("message.content", "matches", r"^【", "hi【云片】", False),
    ("message.content", "matches", r"退订$", "回T退订\n", True),          # Python's $ before a final newline
    ("message.content", "matches", r"退订\Z", "回T退订\n", False),
    ("message.content", "matches", r"aba", "xabab", True),               # durable's own regex says no
    ("message.content", "matches", r"a.b", "a\nb", True),                # . matches newlines
    ("message.content", "matches", r"x", None, False),
    ("recipient.number", "exists", True, "13800138000", True),
    ("recipient.number", "exists", True, None, False),
    ("recipient.number", "exists", False, None, True),
    ("recipient.number", "exists", False, "13800138000", False),
    ("message.keyword_groups", "exists", True, [], True),
    ("recipient.blacklisted.global", "eq", True, True, True),
    ("recipient.blacklisted.global", "eq", True, False, False),
    ("recipient.blacklisted.global", "eq", False, False, True),
    ("recipient.blacklisted.global", "ne", True, False, True),
    ("recipient.blacklisted.global", "ne", False, None, False),
]


@engines
@pytest.mark.parametrize("fact,op,value,given,expected", CASES)
def test_operator(engine, fact, op, value, given, expected):
    assert matches_one(engine, fact, op, value, given) is expected


NOT_CASES = [
    # `not` keeps an absent fact false: it negates the test, not the absence
    (Not(Compare("message.length", "eq", 70)), {}, False),
    (Not(Compare("message.length", "eq", 70)), facts(**{"message.length": 71}), True),
    (Not(Compare("message.content", "contains", "退订")), {}, False),
    (Not(Compare("message.content", "contains", "退订")), facts(**{"message.content": "回T退订"}), False),
    (Not(Compare("message.content", "contains", "退订")), facts(**{"message.content": "买房"}), True),
    (Not(Compare("message.content", "matches", "退订|回T")), facts(**{"message.content": "买房"}), True),
    (Not(Compare("message.keyword_groups", "contains", "loan")), facts(**{"message.keyword_groups": []}), True),
    (Not(Compare("message.keyword_groups", "contains", "loan")), facts(**{"message.keyword_groups": ["loan"]}), False),
    (Not(Compare("recipient.number", "exists", True)), {}, True),
    (Not(Not(Compare("message.length", "gt", 5))), facts(**{"message.length": 6}), True),
    (Not(All((Compare("message.length", "gt", 5), Compare("message.hour", "lt", 8)))),
     facts(**{"message.length": 6, "message.hour": 9}), True),
    (Not(Any_((Compare("message.length", "gt", 5), Compare("message.hour", "lt", 8)))),
     facts(**{"message.length": 1}), False),                                   # hour absent: unknown
    (Any_((Compare("recipient.number", "exists", False), Not(Compare("recipient.number", "eq", "13800138000")))),
     {}, True),
    (All((Compare("message.length", "gt", 5), Compare("message.hour", "exists", False))),
     facts(**{"message.length": 6}), True),
]


@engines
@pytest.mark.parametrize("when,given,expected", NOT_CASES)
def test_logic_and_absent_facts(engine, when, given, expected):
    e = engine([rule(0, when)], "logic")
    assert bool(e.match(given)) is expected
    e.close()


@engines
def test_only_absent_tests_fire_once_and_do_not_loop(engine):
    # a durable rule of only $nex tests matches the engine's own state fact and would fire forever
    e = engine([rule(0, Compare("recipient.number", "exists", False)),
                rule(1, Any_((Compare("message.hour", "exists", False), Compare("message.length", "exists", False))))],
               "absent")
    assert ids(e.match({})) == ["r0", "r1"]
    assert ids(e.match(facts(**{"message.hour": 1, "message.length": 2}))) == ["r0"]
    e.close()


@engines
def test_result_order_is_priority_then_file_order_and_includes_shadow_rules(engine):
    always = Compare("message.length", "exists", True)
    rules = [rule(0, always, priority=5), rule(1, always, priority=900, mode="shadow"),
             rule(2, always, priority=5), rule(3, always, priority=65535), rule(4, always, priority=0)]
    e = engine(rules, "order")
    assert ids(e.match(facts(**{"message.length": 1}))) == ["r3", "r1", "r0", "r2", "r4"]
    e.close()


@engines
def test_a_rule_matching_through_several_branches_is_listed_once(engine):
    e = engine([rule(0, Any_((Compare("message.length", "gt", 1), Compare("message.hour", "gt", 1),
                               Compare("message.length", "gt", 2))))], "branches")
    assert ids(e.match(facts(**{"message.length": 5, "message.hour": 5}))) == ["r0"]
    e.close()


@engines
@pytest.mark.parametrize("fact,wrong", [
    ("recipient.blacklisted.global", 1),        # durable: true == 1
    ("recipient.blacklisted.global", "true"),   # durable: true == "true"
    ("message.length", "70"),                   # durable: 70 == "70"
    ("message.length", True),
    ("message.length", 70.0),
    ("message.content", 5),
    ("message.keyword_groups", "loan"),
    ("message.keyword_groups", ["loan", 1]),
])
def test_facts_of_the_wrong_type_are_refused_not_coerced(engine, fact, wrong):
    e = engine([rule(0, Compare(fact, "exists", True))], "types")
    with pytest.raises(FactTypeError, match=fact):
        e.match(facts(**{fact: wrong}))
    e.close()


@engines
def test_facts_no_rule_reads_are_not_checked(engine):
    e = engine([rule(0, Compare("message.length", "gt", 1))], "unread")
    assert ids(e.match({"message__length": 2, "message__hour": "not an int", "something": object()})) == ["r0"]
    e.close()


@engines
@pytest.mark.parametrize("when,problem", [
    (Compare("recipient.blacklisted.global", "eq", 1), "needs true or false"),
    (Compare("message.length", "eq", "70"), "needs an integer"),
    (Compare("message.length", "eq", True), "needs an integer"),
    (Compare("account.id", "eq", 900001), "needs a string"),
    (Compare("account.id", "lt", "9"), "does not apply"),
    (Compare("account.id", "in", tuple(f"v{i}" for i in range(33))), "at most 32"),
    (Compare("account.id", "in", ()), "non-empty list"),
    (Compare("message.length", "in", (1, "2")), "'2'"),
    (Compare("message.content", "matches", r"(?<=a)b"), "lookahead and lookbehind"),
    (Compare("message.content", "contains", ""), "non-empty"),
    (Compare("message.nonsense", "eq", 1), "unknown fact"),
    (Compare("message.length", "between", 1), "unknown operator"),
    (All(()), "empty all"),
    (Any_(tuple(Compare("message.length", "eq", i) for i in range(61))), "at most 60"),
    (Any_(tuple(All((Compare("message.length", "eq", i), Compare("message.hour", "eq", i))) for i in range(15))),
     "16 groups"),                        # durable: error 113, 2 of 32 expression slots per $and/$or
])
def test_rules_the_engine_cannot_run_are_refused_with_their_id(engine, when, problem):
    with pytest.raises(RuleCompileError) as e:
        engine([rule(0, Compare("message.length", "gt", 1)), rule(7, when)], "bad")
    assert len(e.value.problems) == 1
    assert "rule 'r7'" in e.value.problems[0] and problem in e.value.problems[0]


@engines
def test_closed_evaluator_refuses_to_match(engine):
    e = engine([rule(0, Compare("message.length", "gt", 1))], "closing")
    e.close()
    e.close()
    with pytest.raises(RulesClosed):
        e.match({})
    assert issubclass(RulesClosed, RuntimeError)
