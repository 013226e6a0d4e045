import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cmpp import (
    CmppEncodeError, count_segments, decode_content, encode_content, parse_udh, split_ucs2,
    udhi_set,
)

EMOJI = "\U0001F600"  # one code point, two UTF-16 units (a surrogate pair)


# ---- parse_udh ----------------------------------------------------------------------------

def test_8_bit_reference():
    assert parse_udh(bytes.fromhex("050003A90302") + b"payload") == (0xA9, 3, 2, b"payload")


def test_16_bit_reference_is_7_bytes():
    concat = parse_udh(bytes.fromhex("06080412340504") + b"payload")
    assert concat == (0x1234, 5, 4, b"payload")
    assert (concat.ref, concat.total, concat.seq, concat.payload) == (0x1234, 5, 4, b"payload")


def test_other_ies_before_the_concat_ie():
    # UDHL 0x0B: port addressing IE (05 04 0B84 23F0), then the 8-bit concat IE
    content = bytes.fromhex("0B05040B8423F00003070201") + b"wap"
    assert parse_udh(content) == (7, 2, 1, b"wap")


def test_udhl_is_read_not_assumed():
    # a UDH with one extra unknown IE after the concat IE still yields the right payload
    content = bytes.fromhex("080003010201" "7001FF") + b"body"
    assert parse_udh(content) == (1, 2, 1, b"body")


@pytest.mark.parametrize("content", [
    b"",
    bytes.fromhex("05"),  # UDHL but nothing after it
    bytes.fromhex("0500030102"),  # UDHL says 5, only 4 follow
    bytes.fromhex("050003010200"),  # part number 0
    bytes.fromhex("050003010203"),  # part 3 of 2
    bytes.fromhex("050003010000"),  # total 0
    bytes.fromhex("0400020102") + b"x",  # IEI 0 with the wrong IE length
    bytes.fromhex("05050401020304") + b"x",  # IE length overruns the UDH
    bytes.fromhex("0605040B8423F0") + b"x",  # a UDH without concat IE
    bytes.fromhex("00") + b"x",  # empty UDH
])
def test_no_or_malformed_concat_header_gives_none(content):
    assert parse_udh(content) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=160))
def test_parse_udh_never_raises(content):
    result = parse_udh(content)
    if result is not None:
        assert 1 <= result.seq <= result.total
        assert content.endswith(result.payload) and len(result.payload) < len(content)


@pytest.mark.parametrize("value,expected", [(0, False), (1, True), (0x40, True), (0x41, True),
                                            (0x02, False), (0x80, False)])
def test_udhi_set_accepts_1_and_0x40(value, expected):
    assert udhi_set(value) is expected


# ---- split_ucs2 / count_segments ----------------------------------------------------------

def test_70_units_fit_one_part_without_udh():
    assert split_ucs2("中" * 70, ref=9) == [("中" * 70).encode("utf-16-be")]
    assert count_segments("中" * 70) == 1


def test_71_units_give_67_plus_4():
    parts = split_ucs2("中" * 71, ref=9)
    assert parts == [bytes.fromhex("050003090201") + ("中" * 67).encode("utf-16-be"),
                     bytes.fromhex("050003090202") + ("中" * 4).encode("utf-16-be")]
    assert len(parts[0]) == 140
    assert count_segments("中" * 71) == 2


@pytest.mark.parametrize("units,segments", [(0, 1), (1, 1), (134, 2), (135, 3), (201, 3),
                                            (202, 4)])
def test_segment_boundaries(units, segments):
    assert len(split_ucs2("a" * units, ref=0)) == count_segments("a" * units) == segments


def test_emoji_is_not_split_across_parts():
    text = "a" * 66 + EMOJI + "b" * 10  # the emoji would straddle units 67/68
    parts = split_ucs2(text, ref=1)
    assert len(parts) == 2
    assert parts[0][6:] == ("a" * 66).encode("utf-16-be")
    assert parts[1][6:] == (EMOJI + "b" * 10).encode("utf-16-be")


def test_emoji_only_text_can_need_more_than_ceil_units_over_67():
    text = EMOJI * 67  # 134 units; pairs force 66 units per part: 66 + 66 + 2
    assert math.ceil(134 / 67) == 2
    assert count_segments(text) == len(split_ucs2(text, ref=1)) == 3


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=400),
       ref=st.integers(0, 255))
def test_split_properties(text, ref):
    parts = split_ucs2(text, ref)
    encoded = text.encode("utf-16-be")
    assert count_segments(text) == len(parts)
    if len(encoded) <= 140:
        assert parts == [encoded]
        return
    payloads = []
    for seq, part in enumerate(parts, 1):
        assert len(part) <= 140
        assert parse_udh(part) == (ref, len(parts), seq, part[6:])
        part[6:].decode("utf-16-be")  # strict: raises if a surrogate pair was cut
        payloads.append(part[6:])
    assert b"".join(payloads) == encoded


def test_split_limits():
    with pytest.raises(CmppEncodeError):
        split_ucs2("x", ref=256)
    with pytest.raises(CmppEncodeError, match="256 parts"):
        split_ucs2("x" * (67 * 255 + 1), ref=0)
    assert len(split_ucs2("x" * (67 * 255), ref=0)) == 255
    with pytest.raises(CmppEncodeError):
        split_ucs2("\ud800", ref=0)  # a lone surrogate has no UCS2 encoding


# ---- encode_content / decode_content ------------------------------------------------------

@pytest.mark.parametrize("msg_fmt,text,data", [
    (0, "Hello", b"Hello"),
    (8, "中文😀", "中文".encode("utf-16-be") + bytes.fromhex("D83DDE00")),
    (15, "中文", bytes.fromhex("D6D0CEC4")),
    (15, "😀", bytes.fromhex("9439FC36")),  # beyond GBK: GB18030's four-byte form
    (4, "\x00\xff\x80", b"\x00\xff\x80"),
    (3, "\x01\x02", b"\x01\x02"),
])
def test_content_round_trip(msg_fmt, text, data):
    assert encode_content(text, msg_fmt) == data
    assert decode_content(data, msg_fmt) == text


def test_binary_formats_keep_every_byte():
    data = bytes(range(256))
    for msg_fmt in (3, 4):
        assert encode_content(decode_content(data, msg_fmt), msg_fmt) == data


@pytest.mark.parametrize("text,msg_fmt", [
    ("中", 0), ("é", 0), ("中", 4), ("x", 9), ("\ud800", 8),
])
def test_unencodable_text_raises_encode_error(text, msg_fmt):
    with pytest.raises(CmppEncodeError):
        encode_content(text, msg_fmt)


def test_decode_replaces_garbage():
    assert decode_content(b"\x4e", 8) == "\ufffd"  # odd length
    assert decode_content(bytes.fromhex("D800"), 8) == "\ufffd"  # lone high surrogate
    assert "\ufffd" in decode_content(b"\xff\xff", 15)
    assert decode_content(b"\xe4", 0) == "\xe4"
    assert decode_content(b"\xe4", 99) == "\xe4"  # unknown format: byte for byte


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=140), msg_fmt=st.sampled_from([0, 3, 4, 8, 15, 24, 255]))
def test_decode_content_never_raises(data, msg_fmt):
    assert isinstance(decode_content(data, msg_fmt), str)
