import pytest

from policy.facts.keywords import KeywordScanner, normalize_text
from policy.rules.model import KeywordGroup


@pytest.fixture(scope="module")
def scanner():
    return KeywordScanner({
        "gambling": KeywordGroup("gambling", ("赌博", "百家乐", "bet365")),
        "contact": KeywordGroup("contact", ("加VX", "Weixin")),
        "both": KeywordGroup("both", ("百家乐",)),
    })


@pytest.mark.parametrize("text", [
    "来赌博吧", "赌 博", "赌★博", "赌\u200b博", "赌\u200d博", "赌，博", "赌-博", "赌\n博", "赌\u3000博",
    "赌\ufe0f博", "赌😀博", "赌「博」",
])
def test_evasions_of_a_cjk_keyword(scanner, text):
    assert scanner.scan(text) == {"gambling"}


@pytest.mark.parametrize("text", ["BET365", "ｂｅｔ３６５", "b e t 3 6 5", "b.e.t.3.6.5", "Bet３６５"])
def test_case_and_width_of_ascii_keywords(scanner, text):
    assert scanner.scan(text) == {"gambling"}


def test_one_pass_finds_every_group(scanner):
    assert scanner.scan("百家乐，请加 V X：abc") == {"gambling", "both", "contact"}
    assert scanner.scan("WEIXIN") == {"contact"}


def test_no_hit(scanner):
    assert scanner.scan("您的验证码是1234") == set()
    assert scanner.scan("") == set()
    assert scanner.scan("赌") == set()


def test_no_keywords_at_all():
    assert KeywordScanner({}).scan("赌博") == set()


def test_a_keyword_of_only_punctuation_is_refused():
    with pytest.raises(ValueError, match="keyword group g: keyword '★ ！' is empty"):
        KeywordScanner({"g": KeywordGroup("g", ("★ ！",))})


def test_normalize_text():
    assert normalize_text("Ａｂ Ｃ，d！\u200b😀Straße") == "abcdstrasse"
