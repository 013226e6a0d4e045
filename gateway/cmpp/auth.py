"""CONNECT authentication (cmpp.md §3): AuthenticatorSource, AuthenticatorISMG, Timestamp."""

import hashlib
from datetime import datetime

from . import constants as c


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else secret.encode("utf-8")


def authenticator_source(source_addr: str, secret: str | bytes, timestamp: int) -> bytes:
    """MD5(Source_Addr as its 6 wire bytes + 9 NUL + secret + timestamp as 10 digits)."""
    addr = source_addr.encode("ascii")
    if len(addr) > 6:
        raise ValueError(f"Source_Addr {source_addr!r} is longer than 6 characters")
    if not 0 <= timestamp <= 9_999_999_999:
        raise ValueError(f"timestamp {timestamp} is not MMDDHHMMSS")
    # The wire carries the timestamp as an integer, so January-September lose the leading
    # zero there; the hash input is always the 10-character string.
    data = addr.ljust(6, b"\0") + bytes(9) + _secret_bytes(secret) + b"%010d" % timestamp
    return hashlib.md5(data).digest()


def authenticator_ismg(status: int, auth_source: bytes, secret: str | bytes, version: int) -> bytes:
    """MD5(Status + AuthenticatorSource + secret), Status at its wire width: 1 byte in 2.x,
    4 bytes big-endian in 3.0."""
    try:
        status_bytes = status.to_bytes(4 if c.is_v3(version) else 1, "big")
    except OverflowError:
        raise ValueError(f"status {status} does not fit the 0x{version:02x} field") from None
    return hashlib.md5(status_bytes + auth_source + _secret_bytes(secret)).digest()


def timestamp_now(dt: datetime | None = None) -> int:
    """CONNECT's Timestamp: MMDDHHMMSS as an integer (local time unless `dt` is given)."""
    dt = dt or datetime.now()
    return (((dt.month * 100 + dt.day) * 100 + dt.hour) * 100 + dt.minute) * 100 + dt.second


def timestamp_to_datetime(ts: int, now: datetime) -> datetime:
    """The datetime a CONNECT Timestamp denotes, in the year (now's, or one either side) that
    puts it nearest to `now`, so a skew check works across New Year.

    ValueError if no such date exists near `now` (month 13, 30 Feb, 29 Feb far from a leap
    year...).
    """
    if not 0 <= ts <= 9_999_999_999:
        raise ValueError(f"timestamp {ts} is not MMDDHHMMSS")
    month, rest = divmod(ts, 10**8)
    day, rest = divmod(rest, 10**6)
    hour, rest = divmod(rest, 10**4)
    minute, second = divmod(rest, 100)
    candidates = []
    for year in (now.year - 1, now.year, now.year + 1):
        try:
            candidates.append(datetime(year, month, day, hour, minute, second, tzinfo=now.tzinfo))
        except ValueError:
            continue
    if not candidates:
        raise ValueError(f"timestamp {ts:010d} is not a valid date near {now:%Y-%m-%d}")
    return min(candidates, key=lambda dt: abs(dt - now))
