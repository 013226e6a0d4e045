"""Msg_Content of each SUBMIT that carries one outbox row to an upstream.

The outbox holds the whole text (reassembled, no concatenation UDH). A text that fits one SMS
goes as it is; a longer one is re-split for the upstream as UCS2 with the 8-bit-reference UDH,
67 characters per part (gateway.cmpp.udh.split_ucs2), whatever Msg_Fmt the customer used.
A non-concatenation UDH the customer sent (port addressing, ...) is put back in front; such a
message must fit one SMS, as we do not merge information elements, and so must binary content
(Msg_Fmt 3, 4), which cannot be re-encoded (NotSplittable; the customer gets MO:200).
"""
from __future__ import annotations

from typing import NamedTuple

from gateway.cmpp import decode_content, split_ucs2

_ONE_SMS = {0: 159}  # Msg_Fmt 0 may use up to 159 bytes (cmpp.md §11); others 140
_UCS2 = 8
_BINARY = (3, 4)  # SIM write and binary: bytes, not text we could re-encode


class NotSplittable(ValueError):
    pass


class UpstreamPart(NamedTuple):
    content: bytes
    msg_fmt: int
    tp_udhi: int
    pk_total: int
    pk_number: int


def upstream_parts(content: bytes, msg_fmt: int, udh: bytes, ref: int) -> list[UpstreamPart]:
    if len(udh) + len(content) <= _ONE_SMS.get(msg_fmt, 140):
        return [UpstreamPart(udh + content, msg_fmt, 1 if udh else 0, 1, 1)]
    if udh:
        raise NotSplittable(f"{len(content)} content bytes behind a {len(udh)}-byte UDH need "
                            f"several parts")
    if msg_fmt in _BINARY:
        raise NotSplittable(f"{len(content)} bytes of binary Msg_Fmt {msg_fmt} need several parts")
    # text longer than one SMS in any encoding is longer than 70 UCS2 units too: always parts
    parts = split_ucs2(decode_content(content, msg_fmt), ref & 0xFF)
    return [UpstreamPart(p, _UCS2, 1, len(parts), n) for n, p in enumerate(parts, 1)]
