"""The one normalization both evaluators apply to string facts: a length cap.

durable_rules keeps the byte length of a string value in an unsigned short, so strings of 65,536
bytes or more wrap: measured on 2.0.28, a fact of 70,000 'x' *equals* a rule value of 4,464 'x'
(70,000 % 65,536), and a 65,536-byte fact equals one differing in its last character; its regex
scanner likewise sees only the first `len % 65536` bytes. The length that counts is that of the
raw JSON text of the value (durable never decodes escapes), so a newline costs 2 bytes and U+0001
costs 6. Both evaluators therefore cut every string fact to its longest prefix whose JSON form is
at most 65,535 UTF-8 bytes; no real fact comes close (the platform caps content at 1,000
characters), and cutting in both keeps them in agreement.
"""
from __future__ import annotations

import json

MAX_ENGINE_BYTES = 65_535
# a JSON string costs at most 6 bytes per character (\u00XX), so anything this short never needs cutting
_ALWAYS_FITS = MAX_ENGINE_BYTES // 6


def cap(s: str) -> str:
    """`s`, or its longest prefix whose JSON form fits the engine's 16-bit string lengths."""
    if len(s) <= _ALWAYS_FITS or _json_bytes(s) <= MAX_ENGINE_BYTES:
        return s
    lo, hi = 0, len(s)  # invariant: s[:lo] fits, s[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _json_bytes(s[:mid]) <= MAX_ENGINE_BYTES:
            lo = mid
        else:
            hi = mid
    return s[:lo]


def _json_bytes(s: str) -> int:
    return len(json.dumps(s, ensure_ascii=False).encode("utf-8")) - 2
