import random

import pytest

from policy.facts.templates import TemplateMatcher, compile_template
from policy.rules.model import Template

CODE = Template("code", "您的验证码是{code}，{minutes}分钟内有效")


@pytest.mark.parametrize("content", [
    "您的验证码是1234，5分钟内有效",
    "【云片科技】您的验证码是1234，5分钟内有效",
    "您的验证码是1234，5分钟内有效【云片科技】",
    " 【云片科技】 您的验证码是abc-XYZ，10分钟内有效 ",
])
def test_matches(content):
    assert TemplateMatcher([CODE]).match(content, "A") == "code"


@pytest.mark.parametrize("content", [
    "您的验证码是，5分钟内有效",                  # empty variable
    "您的验证码是12 34，5分钟内有效",             # whitespace inside a variable
    "您的验证码是" + "9" * 21 + "，5分钟内有效",  # longer than 20
    "您的验证码是1234，5分钟内有效。速来领奖",     # text after the template
    "速来领奖您的验证码是1234，5分钟内有效",      # text before it
])
def test_does_not_match(content):
    assert TemplateMatcher([CODE]).match(content, "A") is None


def test_variable_length_is_configurable():
    m = TemplateMatcher([CODE], var_max=4)
    assert m.match("您的验证码是1234，5分钟内有效", "A") == "code"
    assert m.match("您的验证码是12345，5分钟内有效", "A") is None


def test_literal_parts_are_escaped():
    m = TemplateMatcher([Template("t", "价格(元)：{p}*2 [含税]")])
    assert m.match("价格(元)：3.5*2 [含税]", "A") == "t"
    assert m.match("价格元：3.5*2 [含税]", "A") is None


def test_signature_in_the_template_text_is_ignored_too():
    m = TemplateMatcher([Template("t", "【某公司】您的订单{no}已发货")])
    assert m.match("【另一个签名】您的订单A1已发货", "A") == "t"


def test_templates_are_per_account_or_global():
    m = TemplateMatcher([Template("mine", "快递{no}已到", account="A"), Template("all", "快递{no}已到"),
                         Template("theirs", "包裹{no}已到", account="B")])
    assert m.match("快递123已到", "A") == "mine"   # the account's own first
    assert m.match("快递123已到", "C") == "all"
    assert m.match("包裹123已到", "A") is None
    assert m.match("包裹123已到", "B") == "theirs"


def test_first_in_file_order_among_equals():
    m = TemplateMatcher([Template("wide", "尊敬的{a}"), Template("narrow", "尊敬的{a}用户")])
    assert m.match("尊敬的张三用户", "A") == "wide"
    assert m.match("尊敬的 用户", "A") is None


def test_adjacent_variables_and_no_literal():
    regex, chunk = compile_template("{a}{b}{c}")
    assert chunk == "" and regex.pattern == r"\S{3,60}"
    m = TemplateMatcher([Template("any", "{a}")])
    assert m.match("hello", "A") == "any" and m.match("hello world", "A") is None


def test_many_templates_only_the_matching_one():
    rnd = random.Random(5)
    cjk = [chr(c) for c in range(0x4E00, 0x9FA5)]
    templates = [Template(f"t{i}", "".join(rnd.choices(cjk, k=6)) + "{x}" + "".join(rnd.choices(cjk, k=6)))
                 for i in range(500)]
    m = TemplateMatcher(templates)
    target = templates[377].text.replace("{x}", "42")
    assert m.match(target, "A") == "t377"
    assert m.match("普通的内容", "A") is None


def test_no_templates():
    assert TemplateMatcher([]).match("anything", "A") is None


def test_one_text_filed_by_two_accounts_answers_each_its_own():
    m = TemplateMatcher([Template("a1", "货物{no}到了", account="A"), Template("b1", "货物{no}到了", account="B"),
                         Template("g", "通知{x}")])
    assert m.match("货物123到了", "A") == "a1" and m.match("货物123到了", "B") == "b1"
    assert m.match("货物123到了", "C") is None and m.match("通知abc", "B") == "g"
