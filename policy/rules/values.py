"""Converters for the platform's own value formats: time windows, CIDRs, CMPP versions,
Msg_Fmt and FeeCode values, phone numbers and segments, signatures, URLs, time zones."""
from __future__ import annotations

import ipaddress
import re
import zoneinfo
from datetime import time
from urllib.parse import urlsplit

from .entries import EXPECTED, normalize_number, normalize_segment
from .fields import Invalid, Reader, scalar, text, word
from .model import TimeWindow
from .yamlmarks import Node, describe

# CMPP Msg_Fmt values: 0 ASCII, 3 SIM card write, 4 binary, 8 UCS2, 15 GBK
MSG_FORMATS = (0, 3, 4, 8, 15)
CMPP_VERSIONS = {0x20: "0x20", 0x21: "0x21", 0x30: "0x30"}

_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


def window(node: Node, r: Reader, path: str) -> TimeWindow:
    value = text(node, r, path).replace(" ", "")
    m = _WINDOW.fullmatch(value)
    if not m:
        raise Invalid(f"expected a time window \"HH:MM-HH:MM\" (e.g. \"08:00-21:30\"), got {value!r}")
    start = time(int(m[1]), int(m[2]))
    end = time(int(m[3]), int(m[4]))
    if start == end:
        raise Invalid(f"the window {value!r} is empty; leave the key out to allow the whole day")
    return TimeWindow(start, end)


def cidr(node: Node, r: Reader, path: str) -> str:
    value = text(node, r, path).strip()
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError as e:
        raise Invalid(f"not an IP address or CIDR block: {e}") from None


def cmpp_version(node: Node, r: Reader, path: str) -> int:
    value = scalar(node)
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool) and value in CMPP_VERSIONS:
        return value
    raise Invalid(f"expected a CMPP version (0x20, 0x21 or 0x30), got {describe(node)}")


def msg_format(node: Node, r: Reader, path: str) -> int:
    value = scalar(node)
    if isinstance(value, int) and not isinstance(value, bool) and value in MSG_FORMATS:
        return value
    raise Invalid(f"expected a Msg_Fmt (one of {', '.join(map(str, MSG_FORMATS))}), got {describe(node)}")


def fee_code(node: Node, r: Reader, path: str) -> str:
    value = text(node, r, path).strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 6):
        raise Invalid(f"expected a FeeCode of up to 6 digits, got {value!r}")
    return value.lstrip("0") or "0"


def phone_number(node: Node, r: Reader, path: str) -> str:
    value = text(node, r, path)
    number = normalize_number(value)
    if number is None:
        raise Invalid(f"{value!r} is not {EXPECTED['numbers']}")
    return number


def segment(node: Node, r: Reader, path: str) -> str:
    value = text(node, r, path)
    seg = normalize_segment(value)
    if seg is None:
        raise Invalid(f"{value!r} is not {EXPECTED['segments']}")
    return seg


def signature(node: Node, r: Reader, path: str) -> str:
    """A registered signature, stored without its 【】 brackets."""
    value = word(node, r, path)
    bare = value.removeprefix("【").removesuffix("】").strip()
    if not bare or "【" in bare or "】" in bare:
        raise Invalid(f"expected one signature such as 【云信科技】, got {value!r}")
    return bare


def region(node: Node, r: Reader, path: str) -> str:
    value = word(node, r, path)
    parts = value.split("/")
    if len(parts) > 2 or not all(p.strip() for p in parts):
        raise Invalid(f"expected a province (\"广东\") or province/city (\"广东/深圳\"), got {value!r}")
    return "/".join(p.strip() for p in parts)


def province(node: Node, r: Reader, path: str) -> str:
    """A province a channel serves: routing compares the recipient's province only, so a city
    ("广东/深圳") would make the channel serve nobody."""
    value = word(node, r, path)
    if "/" in value:
        raise Invalid(f"a channel serves whole provinces: write \"{value.split('/', 1)[0].strip()}\", not "
                      f"{value!r} (routing compares the recipient's province only; an account can block "
                      "a city with blocked_regions)")
    return value


def http_url(node: Node, r: Reader, path: str) -> str:
    value = word(node, r, path)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError as e:
        raise Invalid(f"expected an http:// or https:// URL, got {value!r} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"expected an http:// or https:// URL, got {value!r}")
    return value


def timezone(node: Node, r: Reader, path: str) -> str:
    value = word(node, r, path)
    try:
        zoneinfo.ZoneInfo(value)
    # "Asia" names a folder of zones (IsADirectoryError), "../x" or a NUL is a ValueError
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise Invalid(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
    return value


NAME_MAX = 255     # bytes in one file name (Linux NAME_MAX)
PATH_MAX = 4096


def path_name(node: Node, r: Reader, path: str) -> str:
    """A file or folder path as written (relative to the rules folder, or absolute): one the
    operating system can take, checked here so that using it cannot fail for its form."""
    value = word(node, r, path)
    if "\0" in value:
        raise Invalid(f"a path cannot contain a NUL character, got {value!r}")
    raw = value.encode("utf-8")
    if len(raw) >= PATH_MAX:
        raise Invalid(f"the path is {len(raw)} bytes long; at most {PATH_MAX - 1}")
    long = [part for part in value.split("/") if len(part.encode("utf-8")) > NAME_MAX]
    if long:
        raise Invalid(f"the name {long[0][:40]!r}... is {len(long[0].encode('utf-8'))} bytes long; "
                      f"a file or folder name has at most {NAME_MAX}")
    return value


_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def keyword(node: Node, r: Reader, path: str) -> str:
    """A keyword; content and keywords are compared normalized, so it must keep some letters."""
    from ..facts.keywords import normalize_text  # builds a 128k-entry table on first use
    value = word(node, r, path)
    if not normalize_text(value):
        raise Invalid(f"the keyword {value!r} is empty once spaces, punctuation and symbols are "
                      "removed (content is compared without them)")
    return value


def template_text(node: Node, r: Reader, path: str) -> str:
    value = word(node, r, path)
    rest = _PLACEHOLDER.sub("", value)
    if "{" in rest or "}" in rest:
        raise Invalid(f"placeholders are written {{name}} (letters, digits, '_'); check the braces in {value!r}")
    return value


def digits(max_length: int):
    def conv(node: Node, r: Reader, path: str) -> str:
        value = text(node, r, path).strip()
        if value and not (value.isascii() and value.isdigit() and len(value) <= max_length):
            raise Invalid(f"expected up to {max_length} digits, got {value!r}")
        return value
    return conv
