"""Where a decision log lives on disk: rotated file names, globs, read-only opening.

The active file keeps the configured name (`decisions.db`); rotation renames it to
`decisions.<first seq>-<last seq>.db` (zero-padded so that names sort in chain order).
"""
from __future__ import annotations

import glob
import os
import re
import sqlite3
from dataclasses import dataclass
from urllib.parse import quote

from .schema import read_meta


def rotated_name(path: str, first_seq: int, last_seq: int) -> str:
    stem, ext = os.path.splitext(path)
    return f"{stem}.{first_seq:012d}-{last_seq:012d}{ext or '.db'}"


@dataclass(frozen=True)
class Rotated:
    first_seq: int
    last_seq: int
    path: str


def rotated_files(path: str) -> list[Rotated]:
    """The rotated files of the log whose active file is `path`, oldest first."""
    stem, ext = os.path.splitext(path)
    pattern = re.compile(re.escape(os.path.basename(stem)) + r"\.(\d+)-(\d+)" + re.escape(ext or ".db") + "$")
    found = []
    for name in os.listdir(os.path.dirname(path) or "."):
        m = pattern.match(name)
        if m:
            found.append(Rotated(int(m[1]), int(m[2]), os.path.join(os.path.dirname(path), name)))
    return sorted(found, key=lambda r: r.first_seq)


def expand(paths: list[str]) -> list[str]:
    """Files named or matched by `paths` (globs allowed), each once, in the order given."""
    out: list[str] = []
    seen: set[str] = set()
    for p in paths:
        matches = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        if not matches:
            raise FileNotFoundError(f"no decision log matches {p!r}")
        for m in matches:
            if not os.path.isfile(m):
                raise FileNotFoundError(f"decision log {m!r} does not exist")
            key = os.path.realpath(m)
            if key not in seen:
                seen.add(key)
                out.append(m)
    return out


def open_readonly(path: str) -> sqlite3.Connection:
    """Open a log for reading; refuses files that are not decision logs."""
    conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, check_same_thread=False)
    try:
        meta = read_meta(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ValueError(f"{path}: not a decision log ({exc})") from None
    if not meta.get("format", "").startswith("smspolicy-decision-log/"):
        conn.close()
        raise ValueError(f"{path}: not a decision log (no format marker in meta)")
    return conn
