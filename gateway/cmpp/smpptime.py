"""ValId_Time / At_Time: the SMPP time format CMPP refers to (cmpp.md §5, SMPP 3.4 §7.1.1).

Sixteen characters (the 17th byte of the field is the NUL terminator; an empty field, or one
of spaces only, is "not set"):

* absolute `YYMMDDhhmmsstnnp`: the time YYMMDDhhmmss (tenths t) in a zone `nn` quarter hours
  ahead of (`p` = '+') or behind ('-') UTC;
* relative `YYMMDDhhmmss000R`: that many years, months, days, hours, minutes and seconds from
  now (t and nn are '0'; other digits there are tolerated and ignored).

Pure: no clock; the caller gives "now" for relative times.
"""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone


def parse_smpp_time(text: str, now: float) -> float | None:
    """Epoch seconds of an SMPP time, None for an empty field; ValueError (saying what is
    wrong) for anything else."""
    if text.strip(" ") == "":   # not set (some clients pad with spaces instead of NUL)
        return None
    if len(text) != 16:
        raise ValueError(f"{text!r}: an SMPP time is 16 characters (YYMMDDhhmmsstnnp), "
                         f"not {len(text)}")
    digits, p = text[:15], text[15]
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{text!r}: the first 15 characters must be digits")
    yy, mo, dd, hh, mi, ss = (int(digits[i:i + 2]) for i in range(0, 12, 2))
    tenths, nn = int(digits[12]), int(digits[13:15])
    if p == "R":
        if hh > 23 or mi > 59 or ss > 59:
            raise ValueError(f"{text!r}: relative hours, minutes or seconds out of range")
        start = datetime.fromtimestamp(now, timezone.utc)
        months = start.month - 1 + yy * 12 + mo
        year, month = start.year + months // 12, months % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        moved = start.replace(year=year, month=month, day=day)
        return (moved + timedelta(days=dd, hours=hh, minutes=mi, seconds=ss)).timestamp()
    if p not in "+-":
        raise ValueError(f"{text!r}: the last character must be '+', '-' (absolute) or 'R' "
                         f"(relative), not {p!r}")
    if nn > 48:
        raise ValueError(f"{text!r}: the UTC offset is {nn} quarter hours, at most 48")
    try:
        local = datetime(2000 + yy, mo, dd, hh, mi, ss, tenths * 100_000)
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None
    offset = timedelta(minutes=15 * nn) * (1 if p == "+" else -1)
    return local.replace(tzinfo=timezone(offset)).timestamp()
