"""How message text is kept in the decision log: full, masked or hashed.

Masked keeps what an auditor needs to recognise a message (its signature, how it starts and
ends, its length) and hides what identifies a person: every digit becomes '*' (verification
codes, amounts, phone numbers), and so does everything between the first and the last two
characters of the body.
"""
from __future__ import annotations

import re

CONTENT_MODES = ("full", "masked", "hashed")

# A signature is 【...】 at the head or the tail of the message.
_HEAD_SIGNATURE = re.compile(r"^【[^【】]{1,40}】")
_TAIL_SIGNATURE = re.compile(r"【[^【】]{1,40}】$")
_KEEP = 2


def mask(text: str) -> str:
    head = _HEAD_SIGNATURE.search(text)
    tail = None if head else _TAIL_SIGNATURE.search(text)
    if head:
        signature, body = head.group(), text[head.end():]
    elif tail:
        signature, body = tail.group(), text[:tail.start()]
    else:
        signature, body = "", text
    last = len(body) - _KEEP
    masked = "".join(
        "*" if ch.isdigit() or _KEEP <= i < last else ch for i, ch in enumerate(body))
    return signature + masked if head else masked + signature
