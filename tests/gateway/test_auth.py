"""Authenticators against cmpp.md §14 V1-V3 (gocmpp's connect tests), and Timestamp handling."""

import hashlib
from datetime import datetime, timezone

import pytest

from gateway.cmpp import (
    V20, V21, V30, authenticator_ismg, authenticator_source, timestamp_now, timestamp_to_datetime,
)

AUTH_SOURCE = bytes.fromhex("90d00c1d517abd0b4f65f6bcf8535d16")


def test_v1_authenticator_source():
    assert authenticator_source("900001", "888888", 1021080510) == AUTH_SOURCE
    assert authenticator_source("900001", b"888888", 1021080510) == AUTH_SOURCE


@pytest.mark.parametrize("version", [V20, V21])
def test_v2_authenticator_ismg_hashes_a_1_byte_status(version):
    expected = bytes.fromhex("6c0b846e25bab6daa4ed1c466e0f4bd8")
    assert authenticator_ismg(0, AUTH_SOURCE, "888888", version) == expected


def test_v3_authenticator_ismg_hashes_a_4_byte_status():
    expected = bytes.fromhex("7942977274098cf210ab0c16c367bc8d")
    assert authenticator_ismg(0, AUTH_SOURCE, "888888", V30) == expected


def test_status_width_matters_for_nonzero_status():
    assert authenticator_ismg(3, AUTH_SOURCE, "s", V20) == hashlib.md5(
        b"\x03" + AUTH_SOURCE + b"s").digest()
    assert authenticator_ismg(3, AUTH_SOURCE, "s", V30) == hashlib.md5(
        b"\0\0\0\x03" + AUTH_SOURCE + b"s").digest()
    assert authenticator_ismg(300, AUTH_SOURCE, "s", V30)  # fits 4 bytes
    with pytest.raises(ValueError):
        authenticator_ismg(300, AUTH_SOURCE, "s", V20)


def test_timestamp_before_october_is_zero_padded_to_10_digits():
    padded = hashlib.md5(b"900001" + bytes(9) + b"888888" + b"0121080510").digest()
    unpadded = hashlib.md5(b"900001" + bytes(9) + b"888888" + b"121080510").digest()
    assert authenticator_source("900001", "888888", 121080510) == padded != unpadded


def test_short_source_addr_is_nul_padded_to_6_bytes():
    expected = hashlib.md5(b"9001\0\0" + bytes(9) + b"pw" + b"1231235959").digest()
    assert authenticator_source("9001", "pw", 1231235959) == expected


@pytest.mark.parametrize("source_addr,timestamp", [("9000011", 1), ("900001", -1),
                                                   ("900001", 10 ** 10)])
def test_authenticator_source_rejects_bad_input(source_addr, timestamp):
    with pytest.raises(ValueError):
        authenticator_source(source_addr, "pw", timestamp)


def test_timestamp_now():
    assert timestamp_now(datetime(2024, 1, 21, 8, 5, 10)) == 121080510
    assert timestamp_now(datetime(2002, 10, 21, 8, 5, 10)) == 1021080510
    assert 101000000 <= timestamp_now() <= 1231235959


@pytest.mark.parametrize("ts,now,expected", [
    (1021080510, datetime(2024, 10, 21, 8, 0), datetime(2024, 10, 21, 8, 5, 10)),
    # across New Year, in both directions
    (1231235959, datetime(2025, 1, 1, 0, 0, 5), datetime(2024, 12, 31, 23, 59, 59)),
    (101000001, datetime(2024, 12, 31, 23, 59, 59), datetime(2025, 1, 1, 0, 0, 1)),
    # 29 February exists only in the leap year next to now
    (229120000, datetime(2025, 1, 10), datetime(2024, 2, 29, 12, 0)),
    (229120000, datetime(2027, 12, 30), datetime(2028, 2, 29, 12, 0)),
])
def test_timestamp_to_datetime_picks_the_nearest_year(ts, now, expected):
    assert timestamp_to_datetime(ts, now) == expected


def test_timestamp_to_datetime_keeps_the_time_zone():
    now = datetime(2024, 6, 1, tzinfo=timezone.utc)
    assert timestamp_to_datetime(601000000, now) == now


@pytest.mark.parametrize("ts", [
    1301000000,  # month 13
    1000000,  # month 0
    230000000,  # 30 February
    1032000000,  # 32 October
    1021240000, 1021086000, 1021080560,  # hour 24, minute 60, second 60
    229000000,  # 29 February, but 2025-2027 are not leap years
    -1, 10**10,
])
def test_impossible_timestamps_raise(ts):
    with pytest.raises(ValueError):
        timestamp_to_datetime(ts, datetime(2026, 6, 1))
