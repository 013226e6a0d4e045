"""The regular expressions policy authors may write, and their translation to durable_rules' dialect.

A rule's `matches` is a Python regular expression with search semantics:
`re.search(pattern, value, PATTERN_FLAGS)` — found anywhere, `.` matches every character (newlines
too), `\\d \\s \\w` are the ASCII classes [0-9], [ \\t\\n\\v\\f\\r], [A-Za-z0-9_]. The oracle runs
exactly that; the durable evaluator runs the same parse through textmatch.py.

`to_durable` is the gate the loader checks patterns with: it accepts a pattern only if it can be
written in durable_rules' dialect (src/rules/regex.c: Lua-like, whole-string, `%` escapes, `^`/`$`
ordinary characters, no lookarounds, backreferences, word boundaries, lazy or possessive
quantifiers, `{n,m}` up to 100, classes expanded one code point at a time into a fixed array —
4,095 code points crash the process; and at most MAX_POSITIONS positions once every counted
repetition is written out, which the durable evaluator's automaton does) and returns that
translation.

The durable evaluator does not hand the translation to durable_rules, though: regex.c's DFA
construction is wrong in ways no translation avoids. Measured on 2.0.28 (tests/engine/
test_dialect.py pins them): `.*aba.*` rejects "abab", `.*aaa.*` rejects "aaaa", `.*[ab]1.*`
rejects "a1b" (when an accepting state is built, the loop that cancels its specific transitions
skips the one after each deletion), negated classes reject the whole text wherever an excluded
character appears, and some patterns make create_ruleset fail (503) or never return.

The pattern is parsed by Python's own regex parser (re._parser), so both the dialect check and
the automaton read it exactly as `re` does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from re import _constants as C  # the parse-tree opcodes of re._parser
from re import _parser

PATTERN_FLAGS = re.ASCII | re.DOTALL
MAX_COUNT = 100           # regex.c MAX_INTERVAL: {n,m} above it is a parse error
MAX_CLASS = 999           # code points per class; 4,095 crashes regex.c, 1,000 keeps a margin
# character positions once every counted repetition is written out, as the durable evaluator's
# automaton (textmatch.py) builds them: ((x{100}){100}){100} is a million, and compiling it would
# take minutes and gigabytes
MAX_POSITIONS = 5_000

MAX_CP = 0x10FFFF
_SPECIAL = frozenset(".|?*+()[]{}%")         # escaped with % outside a class
# durable_rules never decodes JSON escapes, so a pattern can only be matched against strings sent
# without any: each character JSON escapes travels as a noncharacter reserved for it (U+FFFE is
# avoided, regex.c uses symbol 0xFFFE for `.`); real noncharacters are refused in patterns
_ENGINE_CHAR = {c: 0xFDD0 + c for c in range(0x20)} | {ord('"'): 0x1FFFE, ord("\\"): 0x1FFFF}
_NONCHARACTERS = frozenset([*range(0xFDD0, 0xFDF0), 0xFFFE, 0xFFFF, 0x1FFFE, 0x1FFFF])
_NEVER_IN_ENGINE = sorted({*_ENGINE_CHAR, 0xFFFE, 0xFFFF})

_ASCII_CATEGORY = {
    C.CATEGORY_DIGIT: ([(0x30, 0x39)], False),
    C.CATEGORY_NOT_DIGIT: ([(0x30, 0x39)], True),
    C.CATEGORY_SPACE: ([(0x09, 0x0D), (0x20, 0x20)], False),
    C.CATEGORY_NOT_SPACE: ([(0x09, 0x0D), (0x20, 0x20)], True),
    C.CATEGORY_WORD: ([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)], False),
    C.CATEGORY_NOT_WORD: ([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)], True),
}
_START = [(C.AT, C.AT_BEGINNING), (C.AT, C.AT_BEGINNING_STRING)]
_FLAG_NAMES = {re.IGNORECASE: "i", re.MULTILINE: "m", re.VERBOSE: "x", re.UNICODE: "u"}


class DialectError(ValueError):
    """The pattern cannot be used in a rule; the message says why, in a policy author's terms."""


@dataclass(frozen=True)
class Alternative:
    """One top-level alternative of a search: `.*` is implied on each side that is not anchored."""
    anchored_start: bool
    items: tuple              # re._parser items, with what cannot change the outcome trimmed
    end: str                  # "" (floating), "$" (end or before a final newline), "\\Z" (end)


def parse_search(pattern: str) -> list[Alternative]:
    """The pattern's top-level alternatives, or DialectError for what `re` itself rejects."""
    try:
        tree = _parser.parse(pattern, PATTERN_FLAGS)
    except re.error as e:
        raise DialectError(f"not a valid regular expression: {e.msg} at position {e.pos}") from None
    _refuse_flags(tree.state.flags & ~PATTERN_FLAGS)
    if tree.state.groupdict:
        raise DialectError("named groups (?P<name>...) are not supported by the rules engine; use (...)")
    return _alternatives(list(tree))


def to_durable(pattern: str) -> str:
    """The durable_rules pattern matching a whole (engine-form) value exactly when `pattern` is found
    in it, or DialectError when the pattern uses what durable_rules cannot express."""
    return _Emitter().pattern(parse_search(pattern))


def char_ranges(op, av) -> list[tuple[int, int]]:
    """The code points one single-character item (LITERAL, NOT_LITERAL, ANY, IN) matches."""
    if op is C.LITERAL:
        return [(av, av)]
    if op is C.NOT_LITERAL:
        return _complement([(av, av)])
    if op is C.ANY:
        return [(0, MAX_CP)]
    negate = False
    ranges: list[tuple[int, int]] = []
    for item_op, item in av:
        if item_op is C.NEGATE:
            negate = True
        elif item_op is C.LITERAL:
            ranges.append((item, item))
        elif item_op is C.RANGE:
            ranges.append(item)
        elif item_op is C.CATEGORY:
            cat, inverted = _ASCII_CATEGORY[item]
            ranges.extend(_complement(cat) if inverted else cat)
        else:
            raise DialectError(f"the class item {item_op} is not supported by the rules engine")
    ranges = _merge(ranges)
    return _complement(ranges) if negate else ranges


def _refuse_flags(flags: int) -> None:
    if flags:
        names = "".join(n for f, n in _FLAG_NAMES.items() if flags & f) or hex(flags)
        raise DialectError(f"inline flags (?{names}) are not supported by the rules engine; "
                           "matching is case-sensitive and '.' already matches newlines")


def _alternatives(items: list) -> list[Alternative]:
    start = bool(items) and items[0] in _START
    if start:
        items = items[1:]
    end = ""
    if items and items[-1] == (C.AT, C.AT_END):
        end, items = "$", items[:-1]
    elif items and items[-1] == (C.AT, C.AT_END_STRING):
        end, items = r"\Z", items[:-1]
    if not start and not end and len(items) == 1:
        op, av = items[0]
        if op is C.BRANCH:
            return [alt for branch in av[1] for alt in _alternatives(list(branch))]
        if op is C.SUBPATTERN and not av[1] and not av[2]:
            return _alternatives(list(av[3]))
    return [Alternative(start, tuple(_trim(items, start, end)), end)]


def _trim(items: list, start: bool, end: str) -> list:
    """Drop what cannot change whether a match exists at a floating end: search(a?b) == search(b),
    search(a{2,5}b) == search(a{2}b)."""
    items = list(items)
    if not start:
        while items and items[0][0] is C.MAX_REPEAT:
            low, _high, sub = items[0][1]
            if low == 0:
                items.pop(0)
                continue
            items[0] = (C.MAX_REPEAT, (low, low, sub))
            break
    if not end:
        while items and items[-1][0] is C.MAX_REPEAT:
            low, _high, sub = items[-1][1]
            if low == 0:
                items.pop()
                continue
            items[-1] = (C.MAX_REPEAT, (low, low, sub))
            break
    return items


class _Emitter:
    def pattern(self, alternatives: list[Alternative]) -> str:
        out = []
        for alt in alternatives:
            body = self._seq(alt.items)
            # Python's `$` also matches just before a final newline
            tail = {"": ".*", "$": chr(_ENGINE_CHAR[10]) + "?", r"\Z": ""}[alt.end]
            out.append(("" if alt.anchored_start else ".*") + body + tail)
        if out == [""]:
            raise DialectError("the pattern only matches the empty text; test it with eq: '' instead")
        size = sum(positions(alt.items) for alt in alternatives)
        if size > MAX_POSITIONS:
            raise DialectError(f"the pattern stands for {size:,} character positions once its repetitions "
                               f"are written out (a {{n,m}} inside another multiplies them); the rules "
                               f"engine runs at most {MAX_POSITIONS:,}")
        return out[0] if len(out) == 1 else "(" + "|".join(out) + ")"

    def _seq(self, items) -> str:
        return "".join(self._item(op, av) for op, av in items)

    def _item(self, op, av) -> str:
        if op is C.LITERAL or op is C.IN or op is C.NOT_LITERAL:
            return self._class(op, av)
        if op is C.ANY:
            return "."
        if op is C.BRANCH:
            alternatives = [self._seq(b) for b in av[1]]
            if not all(alternatives):  # regex.c mishandles an empty alternative: (|x) -> (x)?
                kept = [a for a in alternatives if a]
                return f"({'|'.join(kept)})?" if kept else ""
            return "(" + "|".join(alternatives) + ")"
        if op is C.SUBPATTERN:
            _gid, add_flags, del_flags, sub = av
            _refuse_flags(add_flags | del_flags)
            inner = self._seq(sub)
            return f"({inner})" if inner else ""
        if op is C.MAX_REPEAT:
            return self._repeat(*av)
        if op is C.MIN_REPEAT:
            raise DialectError("lazy quantifiers (*?, +?, ??, {n,m}?) are not supported; whether a pattern "
                               "is found does not depend on laziness, so write the greedy form (*, +, ?, {n,m})")
        if op is C.POSSESSIVE_REPEAT or op is C.ATOMIC_GROUP:
            raise DialectError("possessive quantifiers and atomic groups (*+, ++, (?>...)) are not supported")
        if op is C.AT:
            if av in (C.AT_BOUNDARY, C.AT_NON_BOUNDARY):
                raise DialectError(r"word boundaries (\b, \B) are not supported by the rules engine")
            raise DialectError(r"anchors (^, $, \A, \Z) are only supported at the very start or end of the "
                               "pattern, or of one of its top-level alternatives")
        if op is C.GROUPREF or op is C.GROUPREF_EXISTS:
            raise DialectError(r"backreferences (\1, (?P=name), (?(1)...)) are not supported by the rules engine")
        if op is C.ASSERT or op is C.ASSERT_NOT:
            raise DialectError("lookahead and lookbehind ((?=...), (?!...), (?<=...), (?<!...)) "
                               "are not supported by the rules engine")
        raise DialectError(f"the construct {op} is not supported by the rules engine")

    def _repeat(self, low: int, high, sub) -> str:
        unbounded = high is C.MAXREPEAT
        if low > MAX_COUNT or (not unbounded and high > MAX_COUNT):
            raise DialectError(f"repetition counts above {MAX_COUNT} ({{n,m}} with n or m > {MAX_COUNT}) "
                               "are not supported by the rules engine")
        body = self._seq(sub)
        if not body or high == 0:
            return ""
        single = len(sub) == 1 and sub[0][0] in (C.LITERAL, C.ANY, C.IN, C.SUBPATTERN, C.BRANCH)
        atom = body if single else f"({body})"
        if unbounded:
            return atom + {0: "*", 1: "+"}.get(low, f"{{{low},}}")
        if low == high:
            return atom if low == 1 else f"{atom}{{{low}}}"
        if (low, high) == (0, 1):
            return atom + "?"
        return f"{atom}{{{low},{high}}}"

    def _class(self, op, av) -> str:
        """A set of code points as a durable class, literal or `.`; only positive classes.

        regex.c turns a negated class into a deterministic "reject" transition that overrides the
        pattern's other paths (`.*[^a].*` fails on "ab"), so a class must list its members.
        """
        if op is C.LITERAL and av in _NONCHARACTERS:
            raise DialectError(f"the pattern contains U+{av:04X}, a Unicode noncharacter; rules cannot match it")
        wanted = char_ranges(op, av)
        engine = _merge(_to_engine_ranges(_subtract(wanted, [(c, c) for c in sorted(_NONCHARACTERS)])))
        if not engine:
            raise DialectError("a character class matches no character at all")
        if not _subtract(_complement(engine), [(c, c) for c in _NEVER_IN_ENGINE]):
            return "."
        size = _size(engine)
        if size > MAX_CLASS:
            if size > MAX_CP // 2:
                raise _negated()
            raise DialectError(f"a character class covering {size:,} characters is too large for the rules "
                               f"engine (at most {MAX_CLASS}); e.g. [一-龥] (any CJK character) cannot run — "
                               "use smaller ranges or a keyword group")
        if size == 1:
            ch = chr(engine[0][0])
            return "%" + ch if ch in _SPECIAL else ch
        members = _members(engine)
        if members.startswith("^"):  # only ^ and -: as a class it would read as negated
            return "(^|-)"
        return f"[{members}]"


def positions(items) -> int:
    """The automaton nodes textmatch.py builds for the items: each counted repetition copies its
    body, so nested counts multiply."""
    total = 0
    for op, av in items:
        if op is C.BRANCH:
            total += sum(positions(b) for b in av[1]) + len(av[1]) - 1
        elif op is C.SUBPATTERN:
            total += positions(av[3])
        elif op is C.MAX_REPEAT or op is C.MIN_REPEAT:
            low, high, sub = av
            body = positions(sub)
            if high is C.MAXREPEAT:
                total += 1 + body + low * body
            else:
                total += (high - low) * (1 + body) + low * body
        else:
            total += 1
    return total


def _negated() -> DialectError:
    return DialectError("negated classes ([^...], \\D, \\S, \\W) are not supported by the rules engine: it "
                        "rejects the whole text wherever an excluded character appears; list the characters "
                        "you want instead")


def _members(ranges: list[tuple[int, int]]) -> str:
    # inside a class regex.c treats ] % - and a leading ^ specially; a range may not start at an
    # escape, and '-' is literal only just before the closing ']'
    plain, escaped, caret, dash = [], [], False, False
    for lo, hi in _subtract(ranges, [(0x25, 0x25), (0x2D, 0x2D), (0x5D, 0x5E)]):
        plain.append(chr(lo) if lo == hi else f"{chr(lo)}-{chr(hi)}")
    for lo, hi in ranges:
        escaped += [esc for cp, esc in ((0x25, "%%"), (0x5D, "%]")) if lo <= cp <= hi]
        caret = caret or lo <= 0x5E <= hi
        dash = dash or lo <= 0x2D <= hi
    return "".join(plain) + "".join(escaped) + ("^" if caret else "") + ("-" if dash else "")


def _to_engine_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    moved = [(e, e) for c, e in _ENGINE_CHAR.items() for lo, hi in ranges if lo <= c <= hi]
    return _subtract(ranges, [(c, c) for c in sorted(_ENGINE_CHAR)]) + moved


def _merge(ranges) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _complement(ranges) -> list[tuple[int, int]]:
    out, nxt = [], 0
    for lo, hi in _merge(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return out


def _subtract(ranges, remove) -> list[tuple[int, int]]:
    keep = _complement(remove)
    out = []
    for lo, hi in _merge(ranges):
        for klo, khi in keep:
            a, b = max(lo, klo), min(hi, khi)
            if a <= b:
                out.append((a, b))
    return out


def _size(ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)
