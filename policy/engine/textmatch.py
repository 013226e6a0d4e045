"""Which of a string fact's text tests hold: one pass over the string, linear time, `re.search` semantics.

The durable evaluator cannot leave `matches` and `contains` to durable_rules (its regex compiler
is wrong, see dialect.py), and Python's backtracking `re` can take exponential time on the
customer-controlled content for patterns like `(a+)+b` while holding the GIL. So the patterns of
one fact are compiled together into a Thompson NFA (from the same re._parser tree the dialect
checks) and run as a lazily built DFA: each distinct (state, character) step is computed once
and cached, every later message walks the cache. Substring tests and plain-literal patterns use
`str.__contains__` instead.
"""
from __future__ import annotations

from bisect import bisect_right
from re import _constants as C
from typing import Sequence

from .dialect import Alternative, DialectError, MAX_CP, char_ranges, parse_search

# cached DFA size above which the cache is dropped and rebuilt as messages need it
MAX_STATES = 2_000
MAX_TRANSITIONS = 200_000

_CHAR, _SPLIT, _MATCH, _MATCH_END = range(4)
_SINGLE = (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN)


class TextMatcher:
    """`found(s)`: the indices of the tests (("contains", text) or ("matches", pattern)) true of s."""

    def __init__(self, tests: Sequence[tuple[str, str]]):
        self._substrings: list[tuple[int, str]] = []
        self._nfa = _NFA()
        patterns: list[int] = []
        for i, (kind, value) in enumerate(tests):
            literal = value if kind == "contains" else _plain_literal(value)
            if literal is not None:
                self._substrings.append((i, literal))
            else:
                self._nfa.add(i, parse_search(value))
                patterns.append(i)
        self._dfa = _LazyDFA(self._nfa, frozenset(patterns)) if patterns else None
        # the automaton walks the text character by character; most texts contain none of the
        # literal runs every alternative of the patterns needs, so a substring search (in C)
        # decides those without the walk. None: some alternative needs no literal, always walk.
        self._gates: list[tuple[str, ...]] | None = []
        for i in patterns:
            for alt in parse_search(tests[i][1]):
                runs = required_literals(alt)
                if not runs:
                    self._gates = None
                    break
                self._gates.append(runs)
            if self._gates is None:
                break

    def found(self, s: str) -> set[int]:
        hits = {i for i, sub in self._substrings if sub in s}
        if self._dfa is not None:
            gates = self._gates
            if gates is None or any(all(run in s for run in runs) for runs in gates):
                hits |= self._dfa.run(s)
        return hits


def required_literals(alt: Alternative) -> tuple[str, ...]:
    """Substrings every match of the alternative contains: its runs of consecutive literal
    characters at the top level (a literal inside a group, a branch or a repeat may be skipped
    or split, so those only end a run)."""
    runs, run = [], []
    for op, av in alt.items:
        if op is C.LITERAL:
            run.append(chr(av))
        elif run:
            runs.append("".join(run))
            run = []
    if run:
        runs.append("".join(run))
    return tuple(runs)


def _plain_literal(pattern: str) -> str | None:
    alternatives = parse_search(pattern)
    if len(alternatives) != 1:
        return None
    alt = alternatives[0]
    if alt.anchored_start or alt.end or not all(op is C.LITERAL for op, _ in alt.items):
        return None
    return "".join(chr(av) for _, av in alt.items)


class _NFA:
    def __init__(self) -> None:
        self.kind: list[int] = []
        self.arg: list = []          # CHAR: (starts, ranges) or None for any; SPLIT: second branch; MATCH*: test index
        self.next: list[int] = []    # CHAR: successor; SPLIT: first branch
        self.owner: list[int] = []   # the test each node belongs to
        self.anchored: list[int] = []
        self.floating: dict[int, list[int]] = {}
        self._test = -1

    def add(self, test: int, alternatives: list[Alternative]) -> None:
        self._test = test
        for alt in alternatives:
            if alt.end == "":
                tail = self._node(_MATCH, test, -1)
            else:
                tail = self._node(_MATCH_END, test, -1)
                if alt.end == "$":  # Python's $ also matches before a final newline
                    tail = self._node(_SPLIT, tail, self._node(_CHAR, _ranges([(10, 10)]), tail))
            start = self._seq(alt.items, tail)
            if alt.anchored_start:
                self.anchored.append(start)
            else:
                self.floating.setdefault(test, []).append(start)

    def _node(self, kind: int, arg, nxt: int) -> int:
        self.kind.append(kind)
        self.arg.append(arg)
        self.next.append(nxt)
        self.owner.append(self._test)
        return len(self.kind) - 1

    def _seq(self, items, nxt: int) -> int:
        for op, av in reversed(items):
            nxt = self._item(op, av, nxt)
        return nxt

    def _item(self, op, av, nxt: int) -> int:
        if op in _SINGLE:
            ranges = char_ranges(op, av)
            return self._node(_CHAR, None if ranges == [(0, MAX_CP)] else _ranges(ranges), nxt)
        if op is C.BRANCH:
            starts = [self._seq(branch, nxt) for branch in av[1]]
            start = starts[-1]
            for other in reversed(starts[:-1]):
                start = self._node(_SPLIT, start, other)
            return start
        if op is C.SUBPATTERN:
            return self._seq(av[3], nxt)
        if op is C.MAX_REPEAT or op is C.MIN_REPEAT:  # laziness cannot change whether a match exists
            low, high, sub = av
            if high is C.MAXREPEAT:
                loop = self._node(_SPLIT, nxt, -1)
                self.next[loop] = self._seq(sub, loop)
                start = loop
            else:
                start = nxt
                for _ in range(high - low):
                    start = self._node(_SPLIT, nxt, self._seq(sub, start))
            for _ in range(low):
                start = self._seq(sub, start)
            return start
        raise DialectError(f"the construct {op} is not supported by the rules engine")


def _ranges(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    return [lo for lo, _ in ranges], [hi for _, hi in ranges]


class _State:
    __slots__ = ("chars", "ends", "matched", "done", "trans")

    def __init__(self, chars: tuple[int, ...], ends: frozenset[int], matched: frozenset[int], done: bool):
        self.chars = chars        # CHAR nodes alive
        self.ends = ends          # tests matched if the text ends here
        self.matched = matched    # tests already found (a found test stays found)
        self.done = done          # nothing later in the text can change the answer
        self.trans: dict[str, _State] = {}


class _LazyDFA:
    def __init__(self, nfa: _NFA, tests: frozenset[int]):
        self._nfa = nfa
        self._tests = tests
        self._reset()

    def run(self, s: str) -> set[int]:
        state = self._initial
        for ch in s:
            if state.done:
                return set(state.matched)
            nxt = state.trans.get(ch)
            state = nxt if nxt is not None else self._step(state, ch)
        return set(state.matched | state.ends)

    def _reset(self) -> None:
        self._states: dict[tuple, _State] = {}
        self._transitions = 0
        starts = list(self._nfa.anchored) + [s for starts in self._nfa.floating.values() for s in starts]
        self._initial = self._state(starts, frozenset())

    def _step(self, state: _State, ch: str) -> _State:
        c = ord(ch)
        nfa = self._nfa
        targets = []
        for n in state.chars:
            arg = nfa.arg[n]
            if arg is None:
                targets.append(nfa.next[n])
            else:
                starts, ends = arg
                i = bisect_right(starts, c) - 1
                if i >= 0 and c <= ends[i]:
                    targets.append(nfa.next[n])
        for test, starts in nfa.floating.items():
            if test not in state.matched:
                targets.extend(starts)
        nxt = self._state(targets, state.matched)
        if len(self._states) > MAX_STATES or self._transitions > MAX_TRANSITIONS:
            self._reset()  # the state just computed stays valid; only the cache is dropped
        else:
            state.trans[ch] = nxt
            self._transitions += 1
        return nxt

    def _state(self, starts: list[int], matched: frozenset[int]) -> _State:
        nfa = self._nfa
        chars, ends, hits = set(), set(), set()
        seen, stack = set(), list(starts)
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            kind = nfa.kind[n]
            if kind == _SPLIT:
                stack.append(nfa.next[n])
                stack.append(nfa.arg[n])
            elif kind == _CHAR:
                chars.add(n)
            elif kind == _MATCH:
                hits.add(nfa.arg[n])
            else:
                ends.add(nfa.arg[n])
        matched = matched | hits
        key_chars = tuple(sorted(n for n in chars if nfa.owner[n] not in matched))
        key_ends = frozenset(ends - matched)
        key = (key_chars, key_ends, matched)
        state = self._states.get(key)
        if state is None:
            floating_alive = any(t not in matched for t in nfa.floating)
            done = matched == self._tests or (not key_chars and not floating_alive)
            state = _State(key_chars, key_ends, matched, done)
            self._states[key] = state
        return state
