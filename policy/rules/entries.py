"""Number and segment list entries: normalizing them, and checking large entry files fast.

Entry files hold one entry per line ('#' starts a comment) and are read with plain line
splitting, not YAML: a one-million-number file is checked in well under a second. The loader
only checks them; the fact builder indexes them (policy/facts/lists.py).
"""
from __future__ import annotations

from ..facts.numbers import normalize_number as _strip_prefix
from .errors import Problem
from .model import Where

MAX_PROBLEMS_PER_FILE = 20


def normalize_number(raw: str) -> str | None:
    """The 11-digit mobile number, +86 / 0086 / 86 stripped as the fact builder does; None if not one."""
    s, digits = _strip_prefix(raw.strip())
    return s if digits and len(s) == 11 and s[0] == "1" else None


def normalize_segment(raw: str) -> str | None:
    """A number prefix of 3 to 7 digits; None when it is not one."""
    s = raw.strip()
    if 3 <= len(s) <= 7 and s.isascii() and s.isdigit():
        return s
    return None


NORMALIZERS = {"numbers": normalize_number, "segments": normalize_segment}
EXPECTED = {"numbers": "an 11-digit mobile number (+86, 0086 or 86 may precede it)",
            "segments": "a segment of 3 to 7 digits"}


def entry_lines(text: str) -> list[str]:
    """The lines of an entry file exactly as the fact builder reads them (a text-mode file,
    policy/facts/numbers.py open_number_file): ended by \\n, \\r or \\r\\n only. str.splitlines
    would also end lines at a form feed, U+2028 and others, so numbers the builder sees as one
    line (and refuses as no number) would be checked as two good ones."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and not lines[-1]:
        lines.pop()  # after the last line's newline
    return lines


def check_entry_file(data: bytes, kind: str, rel: str) -> tuple[int, list[Problem]]:
    """How many entries the file holds, and its bad lines (the first few, then a count)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return 0, [Problem(Where(rel, line, 1, ""), f"not UTF-8 text (byte 0x{data[e.start]:02x})")]
    normalize = NORMALIZERS[kind]
    problems: list[Problem] = []
    count = bad = 0
    lineno = 0
    for lineno, line in enumerate(entry_lines(text), 1):
        # the common case, a bare 11-digit mobile number, skips the normalizer
        if kind == "numbers" and len(line) == 11 and line[0] == "1" and line.isdigit() and line.isascii():
            count += 1
            continue
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if normalize(entry) is not None:
            count += 1
            continue
        bad += 1
        if bad <= MAX_PROBLEMS_PER_FILE:
            problems.append(Problem(Where(rel, lineno, 1, ""), f"{entry!r} is not {EXPECTED[kind]}"))
    if bad > MAX_PROBLEMS_PER_FILE:
        problems.append(Problem(Where(rel, lineno, 1, ""),
                                f"and {bad - MAX_PROBLEMS_PER_FILE} more bad lines"))
    return count, problems
