"""Destination numbers: prefix normalization, the key every number index uses, and mobile validity."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, TextIO

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType

_PREFIXES = ("+86", "0086", "86")
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)

# Segments are the 7-digit prefixes 1000000..1999999; index = int(segment) - SEGMENT_BASE.
SEGMENT_BASE = 1_000_000
SEGMENT_COUNT = 1_000_000


def normalize_number(raw: str) -> tuple[str, bool]:
    """(number without whitespace and without +86/0086/86, whether it is only ASCII digits).

    0086 and 86 are stripped only when what remains is a mobile-shaped 11-digit number starting
    with 1, so short codes and foreign numbers are left as they came. +86 is stripped whenever
    digits follow it: the number is then digits of some length, judged per recipient (MA:0021
    when not 11 of them) like the same digits after 0086, not a malformed destination (result 12).
    """
    if len(raw) == 11 and raw.isdigit() and raw.isascii():  # the common, already-clean case
        return raw, True
    s = "".join(raw.split())
    for prefix in _PREFIXES:
        if s.startswith(prefix):
            rest = s[len(prefix):]
            digits = rest.isdigit() and rest.isascii()
            if digits and (prefix == "+86" or (len(rest) == 11 and rest[0] == "1")):
                s = rest
            break
    return s, s.isdigit() and s.isascii()


def number_key(number: str) -> int | str:
    """The key of a normalized number in every number set and index.

    Digit strings become ints: an 11-digit int costs 32 bytes against 60 for the str, which
    matters at a million listed numbers (see bench/facts_micro.py). Numbers with a leading zero,
    over 18 digits or with other characters stay str so that no two distinct numbers share a key.
    """
    if 0 < len(number) <= 18 and number[0] != "0" and number.isdigit() and number.isascii():
        return int(number)
    return number


class NumberSet:
    """Lookups of a list held as a set of number keys in `self._keys` (the file blacklist and
    the API blacklist, whatever stores them). Reads take no lock: a set membership test is
    atomic in CPython, and the holders swap or update the set under their own lock."""
    _keys: set[int | str]

    def contains(self, number: str) -> bool:
        return number_key(number) in self._keys

    def contains_key(self, key: int | str) -> bool:
        return key in self._keys

    @property
    def size(self) -> int:
        return len(self._keys)


def iter_numbers(lines: Iterable[str], bad: list[int]) -> Iterator[str]:
    """Normalized numbers of list-file lines (one per line, '#' starts a comment, blank lines
    ok), streamed so a million-line file never sits in memory as text. The 1-based numbers of
    lines that hold something other than a number are appended to `bad` for the caller."""
    for lineno, line in enumerate(lines, 1):
        if "#" in line:
            line = line.split("#", 1)[0]
        line = line.strip()
        if not line:
            continue
        number, digits = normalize_number(line)
        if digits:
            yield number
        else:
            bad.append(lineno)


def open_number_file(path: str | Path) -> TextIO:
    # a BOM is not part of line 1; lines end at \n, \r or \r\n (universal newlines) only, as
    # policy/rules/entries.py entry_lines splits them when `check` reads the same file
    return open(path, encoding="utf-8-sig", errors="replace")


# Validity of a Chinese mobile number is cached per 7-digit segment. That is sound because
# libphonenumber decides it from the national number's leading digits and its length alone:
# the CN mobile pattern is 1(?:610\d|740[0-5])\d{6}|1(?:[38]\d|4[57]|[59][0-35-9]|6[25-7]|
# 7[0-35-8])\d{8} with possible length 11 only, so at most the first 6 digits matter and the
# remaining digits are free. tests/facts/test_numbers.py re-checks the claim on a sample of
# segments with several suffixes each against phonenumbers itself, so a metadata update that
# broke it would fail the suite. One byte per segment: 0 not yet known, 1 valid, 2 not valid.
_validity = bytearray(SEGMENT_COUNT)


def _mobile_valid_uncached(number: str) -> bool:
    n = PhoneNumber(country_code=86, national_number=int(number))
    return phonenumbers.number_type(n) in _MOBILE_TYPES


def is_valid_mobile(number: str) -> bool:
    """A valid Chinese mobile number (normalized: 11 digits, no prefix), per phonenumbers."""
    if len(number) != 11 or number[0] != "1" or not (number.isdigit() and number.isascii()):
        return False
    i = int(number[:7]) - SEGMENT_BASE
    v = _validity[i]
    if v == 0:
        v = 1 if _mobile_valid_uncached(number) else 2
        _validity[i] = v
    return v == 1
