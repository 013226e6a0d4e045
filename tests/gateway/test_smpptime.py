"""At_Time / ValId_Time in the SMPP time format (cmpp.md §5, SMPP 3.4 §7.1.1)."""
from datetime import datetime, timezone

import pytest

from gateway.cmpp import parse_smpp_time

NOW = datetime(2026, 1, 31, 3, 20, 5, tzinfo=timezone.utc).timestamp()


def test_empty_is_not_set():
    assert parse_smpp_time("", NOW) is None
    assert parse_smpp_time(" " * 16, NOW) is None


@pytest.mark.parametrize("text,expected", [
    ("261208120000032+", datetime(2026, 12, 8, 4, 0, tzinfo=timezone.utc)),     # 12:00 at +8 h
    ("261208120000000+", datetime(2026, 12, 8, 12, 0, tzinfo=timezone.utc)),
    ("261208120000520-", datetime(2026, 12, 8, 17, 0, 0, 500000, tzinfo=timezone.utc)),  # -5 h
    ("151105131555101+", datetime(2015, 11, 5, 13, 0, 55, 100000, tzinfo=timezone.utc)),
])
def test_absolute(text, expected):
    assert parse_smpp_time(text, NOW) == expected.timestamp()


@pytest.mark.parametrize("text,expected", [
    ("000000000003000R", datetime(2026, 1, 31, 3, 20, 8, tzinfo=timezone.utc)),
    ("000001020304000R", datetime(2026, 2, 1, 5, 23, 9, tzinfo=timezone.utc)),
    ("000100000000000R", datetime(2026, 2, 28, 3, 20, 5, tzinfo=timezone.utc)),   # 31 Jan + 1 month
    ("011100000000000R", datetime(2027, 12, 31, 3, 20, 5, tzinfo=timezone.utc)),
])
def test_relative(text, expected):
    assert parse_smpp_time(text, NOW) == expected.timestamp()


@pytest.mark.parametrize("text,why", [
    ("2612081200", "16 characters"),
    ("261208120000032+ ", "16 characters"),
    ("2612081200000a2+", "digits"),
    ("261208120000032*", "last character"),
    ("261208120000049+", "at most 48"),
    ("261308120000032+", "month"),
    ("260230120000032+", "day"),
    ("000000250000000R", "out of range"),
    ("２６1208120000032+", "digits"),
])
def test_malformed(text, why):
    with pytest.raises(ValueError, match=why):
        parse_smpp_time(text, NOW)
