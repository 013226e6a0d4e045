"""Filed content templates: which filed template, if any, a message's content matches.

A template reads like the messages it allows: "您的验证码是{code}，{minutes}分钟内有效". Each
{name} matches 1..var_max non-whitespace characters, everything else is literal. The 【signature】
at the head or tail is not part of the comparison, on either side.

With hundreds of templates, trying every regex in turn would dominate the cost. Instead each
template is indexed by its longest literal chunk in one Aho–Corasick automaton: one pass over the
content yields the few templates whose chunk occurs, and only those regexes are tried.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from ..rules.model import Template
from .automaton import ByteAutomaton
from .content import extract_signature, strip_signature

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class _Compiled:
    id: str
    account: str | None
    rank: tuple[int, int]           # account-specific before global, then file order
    regex: re.Pattern


def compile_template(text: str, var_max: int = 20) -> tuple[re.Pattern, str]:
    """(whole-content regex, longest literal chunk) of one template text."""
    body = strip_signature(text, extract_signature(text))
    literals = _VAR.split(body)[::2]
    parts: list[str] = []
    run = 0  # adjacent variables merge into one \S{n,n*var_max}: no nested backtracking
    for i, literal in enumerate(literals):
        if literal:
            if run:
                parts.append(rf"\S{{{run},{run * var_max}}}")
                run = 0
            parts.append(re.escape(literal))
        if i < len(literals) - 1:
            run += 1
    if run:
        parts.append(rf"\S{{{run},{run * var_max}}}")
    return re.compile("".join(parts), re.DOTALL), max(literals, key=len)


class TemplateMatcher:
    def __init__(self, templates: Iterable[Template], var_max: int = 20):
        if var_max < 1:
            raise ValueError(f"var_max must be at least 1, not {var_max}")
        self._always: list[_Compiled] = []  # templates without any literal text
        by_chunk: dict[str, list[_Compiled]] = {}
        for order, t in enumerate(templates):
            regex, chunk = compile_template(t.text, var_max)
            c = _Compiled(t.id, t.account, (0 if t.account else 1, order), regex)
            if chunk:
                by_chunk.setdefault(chunk, []).append(c)
            else:
                self._always.append(c)
        self.count = sum(map(len, by_chunk.values())) + len(self._always)
        # one automaton per account holding templates (its own and the global ones) and one of
        # the global ones for every other account: a scan yields only templates that may apply
        self._automaton = self._index(by_chunk, None)
        owners = {c.account for cs in by_chunk.values() for c in cs if c.account is not None}
        self._by_account = {a: self._index(by_chunk, a) for a in owners}

    @staticmethod
    def _index(by_chunk: dict[str, list[_Compiled]], account: str | None) -> ByteAutomaton:
        mine = ((chunk, tuple(c for c in cs if c.account is None or c.account == account))
                for chunk, cs in by_chunk.items())
        return ByteAutomaton((chunk, cs) for chunk, cs in mine if cs)

    def match(self, content: str, account_id: str, signature: str | None = None) -> str | None:
        """Id of the filed template (the account's own first, then global ones, in file order)
        that the whole content matches, signature aside; None when none does.

        `signature` is the content's already extracted signature, to save extracting it again.
        """
        if not self.count:
            return None
        if signature is None:
            signature = extract_signature(content)
        body = strip_signature(content, signature)
        candidates = [c for c in self._always if c.account is None or c.account == account_id]
        for compiled in self._by_account.get(account_id, self._automaton).values(body):
            candidates += compiled
        if not candidates:
            return None
        if len(candidates) > 1:  # a chunk can occur twice; try each template once, best first
            candidates = sorted(dict.fromkeys(candidates), key=_rank)
        for c in candidates:
            if c.regex.fullmatch(body):
                return c.id
        return None


def _rank(c: _Compiled) -> tuple[int, int]:
    return c.rank
