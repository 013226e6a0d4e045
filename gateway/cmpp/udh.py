"""Msg_Content helpers: text encodings by Msg_Fmt and concatenated (long) SMS (cmpp.md §11)."""

from typing import NamedTuple

from .codec import CmppEncodeError

_SINGLE_BYTES = 140  # one SMS: 70 UCS2 units
_PART_BYTES = 134  # 140 minus the 6-byte 8-bit-reference UDH: 67 UCS2 units
_MAX_PARTS = 255  # Pk_total and the UDH part count are one byte


class Concat(NamedTuple):
    ref: int
    total: int
    seq: int
    payload: bytes


def udhi_set(tp_udhi: int) -> bool:
    # The spec says 1, but many gateways copy SMPP's esm_class bit and send 0x40.
    return (tp_udhi & 0x41) != 0


def parse_udh(content: bytes) -> Concat | None:
    """The concatenation header at the start of a UDH-carrying Msg_Content, or None when there
    is none or it is malformed.

    Call it only when udhi_set(tp_udhi). UDHL is read from byte 0 (other IEs, e.g. port
    addressing, may precede the concat IE); both the 8-bit (IEI 0x00) and 16-bit (IEI 0x08)
    reference forms are understood.
    """
    if not content:
        return None
    end = 1 + content[0]
    if end > len(content):
        return None
    pos = 1
    while pos + 2 <= end:
        iei, length = content[pos], content[pos + 1]
        data = content[pos + 2:pos + 2 + length]
        if len(data) < length or pos + 2 + length > end:
            return None
        if iei == 0x00 and length == 3:
            ref, total, seq = data
        elif iei == 0x08 and length == 4:
            ref, total, seq = data[0] << 8 | data[1], data[2], data[3]
        else:
            pos += 2 + length
            continue
        if not 1 <= seq <= total:
            return None
        return Concat(ref, total, seq, content[end:])
    return None


def _ucs2(text: str) -> bytes:
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError as e:  # lone surrogates
        raise CmppEncodeError(f"text cannot be encoded as UCS2: {e}") from None


def _parts(data: bytes) -> list[bytes]:
    if len(data) <= _SINGLE_BYTES:
        return [data]
    parts, pos = [], 0
    while pos < len(data):
        end = min(pos + _PART_BYTES, len(data))
        if end < len(data) and 0xD8 <= data[end - 2] <= 0xDB:
            end -= 2  # a high surrogate would be cut from its pair: move it to the next part
        parts.append(data[pos:end])
        pos = end
    return parts


def split_ucs2(text: str, ref: int) -> list[bytes]:
    """Msg_Content for each SUBMIT of `text` in UCS2 (Msg_Fmt 8).

    Up to 70 UTF-16 units: one part without UDH. Longer: parts of at most 67 units, each led
    by `05 00 03 ref total seq`; send them with TP_udhi=1, Pk_total=total, Pk_number=seq.
    """
    if not 0 <= ref <= 255:
        raise CmppEncodeError(f"8-bit concatenation reference {ref} is not 0..255")
    parts = _parts(_ucs2(text))
    if len(parts) == 1:
        return parts
    if len(parts) > _MAX_PARTS:
        raise CmppEncodeError(f"text needs {len(parts)} parts, at most {_MAX_PARTS} fit")
    total = len(parts)
    return [bytes((5, 0, 3, ref, total, seq)) + part for seq, part in enumerate(parts, 1)]


def count_segments(text: str) -> int:
    """Number of SUBMITs split_ucs2 produces for `text`.

    ceil(units / 67) for long texts, plus one whenever keeping surrogate pairs (emoji) whole
    leaves a part one unit short and that pushes the remainder into another part.
    """
    return len(_parts(_ucs2(text)))


def encode_content(text: str, msg_fmt: int) -> bytes:
    codec = _ENCODE.get(msg_fmt)
    if codec is None:
        raise CmppEncodeError(f"cannot encode text for Msg_Fmt {msg_fmt}; use 0, 3, 4, 8 or 15")
    try:
        return text.encode(codec)
    except UnicodeEncodeError as e:
        raise CmppEncodeError(f"text does not fit Msg_Fmt {msg_fmt} ({codec}): {e}") from None


def decode_content(data: bytes, msg_fmt: int) -> str:
    """Never raises: garbage becomes U+FFFD, and unknown formats are read byte for byte
    (latin-1), like binary 3/4, so that the policy layer always has text to inspect."""
    return data.decode(_DECODE.get(msg_fmt, "latin-1"), errors="replace")


# 0 is ASCII (strict when we send; anything a peer sends decodes as latin-1). 3 (SIM write)
# and 4 (binary) carry bytes: latin-1 maps them 1:1 to code points and back.
# 15 is "GB" Chinese: GB18030 reads GB2312 and GBK as well.
_ENCODE = {0: "ascii", 3: "latin-1", 4: "latin-1", 8: "utf-16-be", 15: "gb18030"}
_DECODE = {8: "utf-16-be", 15: "gb18030"}
