"""Keyword groups: one Aho–Corasick pass over the content finds every group it hits.

Evasion handling is one simple, explainable step applied the same way to the content and to
every keyword before matching (`normalize_text`):
  * full-width ASCII forms become ASCII ("ＶＸ" -> "vx"),
  * case is folded (str.casefold),
  * these characters are removed: whitespace and separators (Unicode Z*), control and format
    characters (Cc, Cf: zero-width space/joiners, BOM), punctuation of every script (P*:
    ASCII and CJK alike), other symbols (So: ★, ♥, emoji) and combining marks (Mn: strike-
    through overlays, variation selectors).
So "赌 博", "赌★博", "赌\u200b博" and "赌，博" all hit the keyword 赌博, and "Ｖ Ｘ" hits "vx".
Not covered, by design: homoglyphs from other scripts, traditional/simplified variants and
pinyin spellings (list them as keywords), and characters above U+1FFFF, which pass unchanged.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Mapping

from ..rules.model import KeywordGroup
from .automaton import ByteAutomaton

_REMOVED_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf",
                                 "Po", "So", "Mn"})
_TABLE_SIZE = 0x20000  # the BMP and plane 1 (emoji); a list indexed by code point


@lru_cache(maxsize=1)
def _table() -> list:
    # A list, not a dict: str.translate looks each character up by index, about twice as fast
    # (1.4 µs for 70 CJK characters). Values: None = drop, int = one code point, str = several
    # (casefold of 'ß' is 'ss').
    table: list = []
    append = table.append
    for cp in range(_TABLE_SIZE):
        c = chr(cp)
        if unicodedata.category(c) in _REMOVED_CATEGORIES:
            append(None)
            continue
        if 0xFF01 <= cp <= 0xFF5E:  # full-width ASCII forms
            c = chr(cp - 0xFEE0)
        f = c.casefold()
        append(ord(f) if len(f) == 1 else f)
    return table


def normalize_text(text: str) -> str:
    return text.translate(_table())


class KeywordScanner:
    def __init__(self, groups: Mapping[str, KeywordGroup]):
        self._table = _table()
        owners: dict[str, set[str]] = {}
        for gid, group in groups.items():
            for word in group.words:
                key = word.translate(self._table)
                if not key:
                    raise ValueError(f"keyword group {gid}: keyword {word!r} is empty once "
                                     "spaces, punctuation and symbols are removed")
                owners.setdefault(key, set()).add(gid)
        self.keyword_count = len(owners)
        self._automaton = ByteAutomaton((key, tuple(sorted(gids))) for key, gids in owners.items())

    def scan(self, text: str) -> set[str]:
        """Ids of the groups whose keywords occur in the (normalized) text."""
        hits: set[str] = set()
        if self.keyword_count and text:
            for gids in self._automaton.values(text.translate(self._table)):
                hits.update(gids)
        return hits
