import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from policy.facts.numbers import is_valid_mobile, iter_numbers, normalize_number, number_key


@pytest.mark.parametrize("raw, expected", [
    ("13800138000", ("13800138000", True)),
    ("+8613800138000", ("13800138000", True)),
    ("008613800138000", ("13800138000", True)),
    ("8613800138000", ("13800138000", True)),
    (" 138 0013 8000 ", ("13800138000", True)),
    ("+86 138-0013-8000", ("+86138-0013-8000", False)),
    ("86138", ("86138", True)),                    # not mobile-shaped: prefix kept
    # digits after +86 are judged per recipient (MA:0005 / MA:0021), never a malformed submit (12)
    ("+8623456789012", ("23456789012", True)),
    ("+86138001380", ("138001380", True)),
    ("+86 1380013800", ("1380013800", True)),
    ("+86", ("+86", False)),
    ("0086138001380", ("0086138001380", True)),  # digits anyway: 0086 / 86 kept unless 11 follow
    ("10690001", ("10690001", True)),
    ("1380013800a", ("1380013800a", False)),
    ("１３８００１３８０００", ("１３８００１３８０００", False)),  # full-width digits are not digits here
    ("", ("", False)),
])
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def test_number_key_keeps_distinct_numbers_distinct():
    assert number_key("13800138000") == 13800138000
    assert number_key("013800138000") == "013800138000"
    assert number_key("abc") == "abc"
    assert number_key("9" * 40) == "9" * 40  # no int() of huge digit strings
    keys = {number_key(n) for n in ["1", "01", "001", "1a"]}
    assert len(keys) == 4


def _pn_valid(number: str) -> bool:
    n = phonenumbers.parse(number, "CN")
    return phonenumbers.is_valid_number(n) and phonenumbers.number_type(n) in (
        PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


def test_validity_is_decided_by_the_segment():
    """The per-segment cache is sound only if every number of a segment has the same validity:
    check segments of every 1xx prefix with several suffixes each against phonenumbers."""
    rnd = random.Random(11)
    segments = [f"1{p:02d}{rnd.randrange(10_000):04d}" for p in range(100) for _ in range(6)]
    segments += ["1740000", "1740500", "1740600", "1610000", "1619999", "1700000"]
    for seg in segments:
        verdicts = {_pn_valid(seg + f"{rnd.randrange(10_000):04d}") for _ in range(4)}
        assert len(verdicts) == 1, seg
        assert is_valid_mobile(seg + "1234") == verdicts.pop(), seg


@pytest.mark.parametrize("number, valid", [
    ("13800138000", True), ("19912345678", True), ("17405123456", True), ("17406123456", False),
    ("12345678901", False), ("1380013800", False), ("138001380000", False), ("1380013800a", False),
    ("", False),
])
def test_is_valid_mobile(number, valid):
    assert is_valid_mobile(number) is valid


def test_iter_numbers_reports_bad_lines():
    bad: list[int] = []
    lines = ["# header", "13800138000", "", "  +8613900000001  # trailing comment", "not-a-number", "86138"]
    assert list(iter_numbers(lines, bad)) == ["13800138000", "13900000001", "86138"]
    assert bad == [5]
