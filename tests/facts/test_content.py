import math

from hypothesis import given, settings, strategies as st

from policy.facts.content import (decode_content, extract_signature, length_units, segments,
                                  strip_signature)


def test_decode_by_msg_fmt():
    text = "【云片】验证码1234"
    assert decode_content(text.encode("utf-16-be"), 8) == text
    assert decode_content(text.encode("gb18030"), 15) == text
    assert decode_content(b"hello", 0) == "hello"
    assert decode_content(b"\x00\xff", 4) == "\x00\xff"
    assert decode_content(b"\x01\x80", 3) == "\x01\x80"


def test_undecodable_bytes_become_replacement_characters():
    assert decode_content(b"ab\xff", 0) == "ab\ufffd"
    assert decode_content("好".encode("utf-16-be") + b"\x41", 8) == "好\ufffd"  # odd length
    assert decode_content(b"\xd8\x00\x00\x41", 8) == "\ufffdA"                 # lone surrogate


@settings(max_examples=200)
@given(st.binary(max_size=300), st.sampled_from([0, 3, 4, 8, 15, 24, 255]))
def test_decode_never_raises(data, fmt):
    assert isinstance(decode_content(data, fmt), str)


def test_signature_at_head_wins_over_tail():
    assert extract_signature("【云片科技】您的验证码是1234【尾巴】") == "【云片科技】"
    assert extract_signature("您的验证码是1234【云片科技】") == "【云片科技】"
    assert extract_signature("  【云片科技】 您好 ") == "【云片科技】"


def test_no_signature():
    for text in ["您的验证码是1234", "", "【】您好", "您好【】", "【未闭合您好", "您好】", "中间【签名】的"]:
        assert extract_signature(text) == "", text


def test_strip_signature():
    assert strip_signature("【云片】 您好", "【云片】") == "您好"
    assert strip_signature("您好 【云片】", "【云片】") == "您好"
    assert strip_signature(" 您好 ", "") == "您好"


def test_length_counts_utf16_units():
    assert length_units("abc") == 3
    assert length_units("验证码") == 3
    assert length_units("a😀") == 3  # astral characters take two units, as on the handset


def test_segments():
    assert segments("") == 1
    assert segments("x" * 70) == 1
    assert segments("x" * 71) == 2
    assert segments("好" * 134) == 2
    assert segments("好" * 135) == 3
    assert segments("😀" * 35) == 1 and segments("😀" * 36) == 2
    assert segments("x" * 1000) == math.ceil(1000 / 67)
