"""Message content: decoding by CMPP Msg_Fmt, the 【signature】, length and billing segments."""
from __future__ import annotations

import codecs

# Msg_Fmt -> codec. 3 (SIM write) and 4 (binary) are raw octets: latin-1 maps every byte to one
# character, so length and keyword checks still see every byte. Formats outside the table are
# decoded the same way; the account's msg_formats decide whether they are allowed at all.
_CODECS = {0: "ascii", 3: "latin-1", 4: "latin-1", 8: "utf-16-be", 15: "gb18030"}

SIGN_OPEN = "【"
SIGN_CLOSE = "】"

SINGLE_UNITS = 70  # UTF-16 units in a single SMS
PART_UNITS = 67    # per part of a long SMS (the UDH takes the rest)


# The codec functions themselves: bytes.decode("utf-16-be") spends most of its 0.5 µs on
# looking the codec up by name.
_DECODERS = {fmt: codecs.lookup(name).decode for fmt, name in _CODECS.items()}
_DECODERS[8] = lambda data, errors: codecs.utf_16_be_decode(data, errors, True)
_LATIN1 = _DECODERS[4]
_utf_16_le_encode = codecs.utf_16_le_encode


def codec_for(msg_fmt: int) -> str:
    return _CODECS.get(msg_fmt, "latin-1")


def decode_content(data: bytes, msg_fmt: int) -> str:
    """Never raises: undecodable bytes become U+FFFD so rules still see the rest."""
    return _DECODERS.get(msg_fmt, _LATIN1)(data, "replace")[0]


def extract_signature(text: str) -> str:
    """The 【...】 at the head, else at the tail (surrounding whitespace ignored); '' when none.

    An empty 【】 is no signature; a head candidate may not contain another 【 (then it is not
    a bracket pair).
    """
    t = text.strip()
    if t.startswith(SIGN_OPEN):
        end = t.find(SIGN_CLOSE, 1)
        if end > 1 and SIGN_OPEN not in t[1:end]:
            return t[:end + 1]
    if t.endswith(SIGN_CLOSE):
        start = t.rfind(SIGN_OPEN, 0, len(t) - 1)
        if 0 <= start < len(t) - 2 and SIGN_CLOSE not in t[start + 1:-1]:
            return t[start:]
    return ""


def strip_signature(text: str, signature: str) -> str:
    """The content without its extracted signature (head or tail), whitespace-trimmed."""
    t = text.strip()
    if not signature:
        return t
    if t.startswith(signature):
        return t[len(signature):].strip()
    return t[:len(t) - len(signature)].strip()


def length_units(text: str) -> int:
    """Length as handsets and carriers count it: UTF-16 code units (astral chars count 2)."""
    if text.isascii():
        return len(text)
    return len(_utf_16_le_encode(text, "surrogatepass")[0]) >> 1


def segments_for_units(units: int) -> int:
    if units <= SINGLE_UNITS:
        return 1
    return -(-units // PART_UNITS)


def segments(text: str) -> int:
    """Billing segments: 1 up to 70 units, else one per 67 units."""
    return segments_for_units(length_units(text))
