"""The rules of one stage compiled into durable_rules rulesets and evaluated through its C core.

How durable_rules is used (every point measured, see /work/shared/reference/durable_rules.md):

* The C extension is called directly; durable.lang and the stock Host start timer threads that
  steal pending actions. No Python action runs: a message is asserted as a *fact*, the queued
  actions are drained with start_action_for_state / complete_and_start_action only to read the
  rule names, and the fact is retracted. Facts (not events) so that every matching rule fires.
* One lock per evaluator serializes assert -> drain -> retract: all messages share the engine's
  state "0", and unserialized threads pick up each other's actions (wrong results, no error).
* Rules are packed into shards of at most `shard_size` rules, MAX_SHARD_TESTS fact tests and
  MAX_SHARD_NODES compared values, far below the limits where the engine fails (more than 64
  tests matching at once: error 303), hangs (more than 511 tests under one node) or crashes
  (256 rules sharing one test).
* A rule made only of "absent" tests ($nex) also matches the engine's own state fact and fires
  forever, so such rules also require `_m`, a field every message carries.
* `$or` branches fire a rule once per true branch; hits are collected as a set.
* Text tests (`contains` on a str fact, `matches`) are not given to durable_rules: its regex
  compiler builds wrong automata (dialect.py). They are evaluated by textmatch.py, and the
  numbers of those true of a fact travel as one list field `_t_<fact key>`, present only when
  the fact is; rules test it like a list fact (one field per fact, however many tests: a message
  may have at most 252 properties).
* Every list travels with a leading sentinel ("" or -1) so that "no item equals x" ($iall) is
  also true of an empty list, for which durable's $iall is false.
* A rule's YAML priority p becomes `pri` 65535 - p (durable fires low `pri` first); the result is
  sorted by (-priority, index) here anyway, durable's tie order is not promised.
"""
from __future__ import annotations

import json
import threading
from typing import Sequence

import durable_rules_engine as _dre

from ..rules.conditions import All, Any_
from ..rules.model import Rule
from ..vocabulary import FACTS, engine_key
from . import EngineError, FactTypeError, RuleCompileError, RulesClosed
from .semantics import _ABSENT, MAX_INT, Prepared, Test, facts_read, prepare_rules, read_facts
from .text import _ALWAYS_FITS, cap
from .textmatch import TextMatcher

MAX_SHARD_TESTS = 60
MAX_SHARD_NODES = 400
GUARD = "_m"                # present in every message; the companion of every $nex
TEXT_PREFIX = "_t_"         # "_t_<fact key>": the numbers of the text tests true of that fact
NOT_HANDLED = 1             # assert_fact: no rule matched, nothing stored

_COMPARE = {"ne": "$neq", "lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}
_MESSAGE_KEYS = frozenset(engine_key(n) for n, f in FACTS.items() if f.stage == "message")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_encode_str = json.encoder.encode_basestring   # what _encode writes for a str (C, ensure_ascii=False)


class DurableRules:
    """Every rule of `rules` that matches a flat facts dict, evaluated by durable_rules."""

    def __init__(self, rules: Sequence[Rule], name: str, shard_size: int = 48, *,
                 shard_tests: int = MAX_SHARD_TESTS, shard_nodes: int = MAX_SHARD_NODES,
                 cache_size: int = 0):
        """`shard_tests` / `shard_nodes` bound the fact tests and compared values per ruleset; raising
        them past the defaults lets a rule set reach the engine's crash and hang limits.

        `cache_size` > 0 remembers, per shard, the rules that matched each of the last
        `cache_size` distinct messages it was sent (settings.match_cache). That is exact: the
        message is every fact the shard's rules read, JSON-encoded, and the engine is stateless
        between calls (each fact is retracted), so its answer is a function of that text alone;
        a new rule set (reload) starts with empty caches."""
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        prepared = prepare_rules(rules)
        self.name = name
        self._rules = [p.rule for p in prepared]
        order = sorted(range(len(prepared)), key=lambda i: (-self._rules[i].priority, self._rules[i].index))
        self._rank = [0] * len(order)
        for position, i in enumerate(order):
            self._rank[i] = position
        self._ordered = [self._rules[i] for i in order]

        # text tests per fact key: (kind, value) -> its number in the fact's _t list
        self._probes: dict[str, dict[tuple[str, str], int]] = {}
        definitions = [self._definition(p) for p in prepared]
        self._read = facts_read(prepared)
        self._plain = [f for f in self._read if _read_by_plain_test(prepared, f[0])]
        self._text = [(key, TEXT_PREFIX + key, TextMatcher(list(probes))) for key, probes in self._probes.items()]
        packed = _pack(prepared, shard_size, shard_tests, shard_nodes)
        # each shard is sent only the fields its own rules test: the engine parses every field of
        # a message and copies the whole message into every match it reports
        self._fields = [frozenset(f for i in members for f in _fields_tested(prepared[i].tree))
                        for members in packed]
        # one function per part, generated here, reads, checks and lays out what the rules read;
        # the message part is made once per message (message_part) for all its recipients
        self._fill_all = _reader(self._read, self._plain, self._text, self._fields, guard=True)
        self._fill_m = _reader([f for f in self._read if f[0] in _MESSAGE_KEYS], self._plain, self._text,
                               self._fields, guard=True)
        self._fill_r = _reader([f for f in self._read if f[0] not in _MESSAGE_KEYS], self._plain, self._text,
                               self._fields, guard=False)
        # with the match cache: keys (tuples of values) instead of messages, a message only on a miss
        self._key_all, self._enc_all = _key_reader(self._read, self._plain, self._text, self._fields,
                                                   guard=True)
        self._key_m, self._enc_m = _key_reader([f for f in self._read if f[0] in _MESSAGE_KEYS], self._plain,
                                               self._text, self._fields, guard=True)
        self._key_r, self._enc_r = _key_reader([f for f in self._read if f[0] not in _MESSAGE_KEYS],
                                               self._plain, self._text, self._fields, guard=False)

        self._cache_size = max(cache_size, 0)
        # per shard: whole-facts keys, and (message key, recipient key) pairs of the split form
        self._caches: list[dict[tuple, tuple[int, ...]]] = [{} for _ in packed]
        self._split_caches: list[dict[tuple, tuple[int, ...]]] = [{} for _ in packed]
        self.cache_lookups = 0   # shard evaluations asked for, and answered from the caches
        self.cache_hits = 0

        self._lock = threading.Lock()
        self._closed = False
        self._shards: list[_Shard] = []
        try:
            for k, members in enumerate(packed):
                self._shards.append(_Shard(f"{name}/{k}", {f"r{i}": definitions[i] for i in members},
                                           [self._rules[i] for i in members]))
        except BaseException:
            self._delete_shards()
            raise

    def message_part(self, message_facts: dict) -> tuple[str, ...]:
        """The message facts' share of every shard's payload, for match(recipient_facts, part):
        what depends only on the message, computed once for all its recipients. Raises
        FactTypeError like match()."""
        return self._key_m(message_facts) if self._cache_size else self._fill_m(message_facts)

    def match(self, facts: dict, message_part: tuple[str, ...] | None = None) -> list[Rule]:
        """Every matching rule (enforce and shadow), sorted by (-priority, index).

        `facts` holds every fact; or, with `message_part` (from message_part() of the message's
        facts), the stage's own facts, of which only those of stage "recipient" are read.
        Raises FactTypeError (an EngineError) for a fact of the wrong type, EngineError when the
        engine fails on this message (the evaluator stays usable), RulesClosed after close().
        """
        hits: set[int] = set()
        if self._cache_size:
            # keys, not messages: a message is built only on a miss
            if message_part is None:
                keys, caches = self._key_all(facts), self._caches
            else:
                keys, caches = list(zip(message_part, self._key_r(facts))), self._split_caches
            with self._lock:
                if self._closed:
                    raise RulesClosed(f"rules '{self.name}' were closed")
                self._collect_cached(keys, caches, hits)
        else:
            payloads = self._payloads(facts, message_part)
            with self._lock:
                if self._closed:
                    raise RulesClosed(f"rules '{self.name}' were closed")
                for shard, payload in zip(self._shards, payloads):
                    shard.collect(payload, hits)
        rank = self._rank
        return [self._ordered[r] for r in sorted(rank[i] for i in hits)]

    def _payloads(self, facts: dict, message_part: tuple[str, ...] | None = None) -> list[str]:
        """The JSON message of each shard."""
        if message_part is None:
            return [f"{{{p}}}" for p in self._fill_all(facts)]
        return [f"{{{m},{r}}}" if r else f"{{{m}}}" for m, r in zip(message_part, self._fill_r(facts))]

    def _collect_cached(self, keys, caches, hits: set[int]) -> None:
        """collect() through the caches; the caller holds the lock. A key is a shard's values
        (whole facts) or its (message values, recipient values): either determines the message."""
        size = self._cache_size
        split = caches is self._split_caches
        for k, (shard, key, cache) in enumerate(zip(self._shards, keys, caches)):
            self.cache_lookups += 1
            found = cache.get(key)
            if found is None:
                if split:
                    m, r = self._enc_m[k](key[0]), self._enc_r[k](key[1])
                    payload = f"{{{m},{r}}}" if r else f"{{{m}}}"
                else:
                    payload = f"{{{self._enc_all[k](key)}}}"
                mine: set[int] = set()
                shard.collect(payload, mine)   # an engine error caches nothing
                found = cache[key] = tuple(mine)
                if len(cache) > size:
                    del cache[next(iter(cache))]   # the oldest entry
            else:
                self.cache_hits += 1
            hits.update(found)

    def close(self) -> None:
        """Delete the rulesets once no match() is running; later match() raises RulesClosed."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._delete_shards()

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    # -- compiling -----------------------------------------------------------------------------

    def _definition(self, p: Prepared) -> dict:
        expr = self._expr(p.tree)
        if _has_absent_test(expr):
            expr = {"$and": [{"$ex": {GUARD: 1}}, expr]}
        return {"all": [{"m": expr}], "pri": 65535 - p.rule.priority}

    def _expr(self, tree) -> dict:
        if isinstance(tree, All):
            items = [self._expr(t) for t in tree.items]
            return items[0] if len(items) == 1 else {"$and": items}
        if isinstance(tree, Any_):
            items = [self._expr(t) for t in tree.items]
            return items[0] if len(items) == 1 else {"$or": items}
        t: Test = tree
        if t.is_text:
            kind = "contains" if t.op.endswith("contains") else "matches"
            probes = self._probes.setdefault(t.key, {})
            n = probes.setdefault((kind, t.value), len(probes))
            if t.op in ("contains", "matches"):
                return {"$iany": {TEXT_PREFIX + t.key: {"$i": n}}}
            return {"$iall": {TEXT_PREFIX + t.key: {"$neq": {"$i": n}}}}
        if t.op == "eq":
            return {t.key: t.value}
        if t.op in _COMPARE:
            return {_COMPARE[t.op]: {t.key: t.value}}
        if t.op == "in":
            items = [{t.key: v} for v in t.value]
            return items[0] if len(items) == 1 else {"$or": items}
        if t.op == "not_in":
            items = [{"$neq": {t.key: v}} for v in t.value]
            return items[0] if len(items) == 1 else {"$and": items}
        if t.op == "contains":          # list membership
            return {"$iany": {t.key: {"$i": t.value}}}
        if t.op == "not_contains":      # every item differs; the "" sentinel makes [] count too
            return {"$iall": {t.key: {"$neq": {"$i": t.value}}}}
        if t.op == "exists":
            return {"$ex" if t.value else "$nex": {t.key: 1}}
        raise AssertionError(f"unhandled test {t}")

    # -- matching ------------------------------------------------------------------------------

    def _payload(self, values: dict) -> str:
        """The message for values read by semantics.read_facts: the reference layout, which the
        generated readers reproduce (tests/engine)."""
        out: dict = {GUARD: 1}
        for key, type_, _name in self._plain:
            v = values.get(key)
            if v is not None:
                out[key] = ["", *v] if type_ == "list" else v
        for key, field, matcher in self._text:
            s = values.get(key)
            if s is not None:
                out[field] = [-1, *sorted(matcher.found(s))]
        return _encode(out)

    def _delete_shards(self) -> None:
        for shard in self._shards:
            shard.delete()


class _Shard:
    """One C ruleset; rebuilt from its definition when a failed evaluation may have left it dirty."""

    def __init__(self, name: str, definition: dict, rules: list[Rule]):
        self.name = name
        self._json = json.dumps(definition, ensure_ascii=False)
        try:
            self._handle: int | None = _dre.create_ruleset(name, self._json)
        except _dre.error as e:
            raise RuleCompileError(_culprits(definition, rules, e)) from None

    def collect(self, payload: str, hits: set[int]) -> None:
        handle = self._handle
        if handle is None:
            raise EngineError(f"ruleset {self.name} is unusable since an earlier engine failure")
        try:
            code, state = _dre.assert_fact(handle, payload)
        except Exception as e:
            self._recover(payload, drained=True)
            raise EngineError(f"ruleset {self.name}: assert failed: {e}") from e
        if code == NOT_HANDLED:
            return
        if code != 0:
            # 2 = an identical fact is already held, which the retract below removes
            self._recover(payload, drained=True)
            raise EngineError(f"ruleset {self.name}: assert returned code {code}")
        try:
            result = _dre.start_action_for_state(handle, state)
            action = result[1] if result else None
            while action:
                hits.add(int(action[3:action.index('"', 3)]))  # '{"r12":{"m":{...}}}'
                action = _dre.complete_and_start_action(handle, state)
        except Exception as e:
            self._recover(payload, drained=False)
            raise EngineError(f"ruleset {self.name}: reading matches failed: {e}") from e
        try:
            _dre.retract_fact(handle, payload)
        except Exception as e:
            self._recover(payload, drained=False)
            raise EngineError(f"ruleset {self.name}: retract failed: {e}") from e

    def delete(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                _dre.delete_ruleset(handle)
            except _dre.error:
                pass  # already gone (e.g. deleted behind our back); nothing left to free

    def _recover(self, payload: str, drained: bool) -> None:
        """Leave the shard clean for the next message: retract the fact; if an action was left
        half-read (its state stays leased and would swallow later matches) or the retract failed,
        replace the ruleset by a fresh one."""
        try:
            _dre.retract_fact(self._handle, payload)
        except Exception:
            drained = False
        if drained:
            return
        self.delete()
        try:
            self._handle = _dre.create_ruleset(self.name, self._json)
        except Exception:
            self._handle = None


def _checked_reads(read, lists_as_tuples: bool):
    """The prologue both generated readers share: (env, lines, var, types). `lines` begin
    fill(facts) with one variable per fact of `read`, type-checked and cut exactly as
    semantics.read_facts does; var[key] names its variable, types[key] its type. A match-cache
    key must be hashable: `lists_as_tuples` makes each list a tuple of cut strings."""
    env = {"_ABSENT": _ABSENT, "_bad": _bad, "cap": cap, "_FITS": _ALWAYS_FITS, "_MAX_INT": MAX_INT,
           "_str": _encode_str}
    lines = ["def fill(facts):", "    get = facts.get"]
    var, types = {}, {}
    for n, (key, type_, name) in enumerate(read):
        k, v = repr(key), f"v{n}"
        var[key], types[key] = v, type_
        lines += [f"    {v} = get({k}, _ABSENT)", f"    if {v} is not _ABSENT:"]
        bad = f"            _bad({k}, {type_!r}, {name!r}, {v})"
        if type_ == "str":
            lines += [f"        if type({v}) is not str:", bad,
                      f"        if len({v}) > _FITS:", f"            {v} = cap({v})"]
        elif type_ == "bool":
            lines += [f"        if type({v}) is not bool:", bad]
        elif type_ == "int":
            lines += [f"        if type({v}) is not int or not -_MAX_INT <= {v} <= _MAX_INT:", bad]
        elif type_ == "list":
            lines += [f"        t = type({v})",
                      f"        if (t is not list and t is not tuple) or not all(type(x) is str for x in {v}):",
                      bad]
            if lists_as_tuples:
                lines.append(f"        {v} = tuple(map(cap, {v}))")
        else:
            raise AssertionError(f"unknown fact type {type_}")
    return env, lines, var, types


def _reader(read, plain, text, shard_fields: list[frozenset], guard: bool):
    """fill(facts) -> per shard, the members of its JSON message (no braces) for the facts of
    `read` that are present, checked and cut exactly as semantics.read_facts does: _payload's
    layout, order and byte-for-byte encoding (the guard, plain-tested facts under their key,
    lists behind the "" sentinel, then the _t_ list of the text tests each text-tested fact
    passes), keeping the fields of `shard_fields` for each shard. Generated once per rule set:
    straight code per fact, writing the JSON text itself, with no loop over specs, no
    intermediate dict and no encoder pass. Keys and names come from the vocabulary and enter
    the code only as literals."""
    env, lines, var, types = _checked_reads(read, lists_as_tuples=False)
    guard_member = json.dumps(GUARD) + ":1"
    # each member of the message once, then each shard's members in _payload's order
    members = []
    for key, _type, _name in plain:
        if key not in var:
            continue
        v, head, m = var[key], json.dumps(key) + ":", f"m{len(members)}"
        emit = {"bool": f"{json.dumps(head + 'true')} if {v} else {json.dumps(head + 'false')}",
                "int": f"{json.dumps(head)} + str({v})",
                "str": f"{json.dumps(head)} + _str({v})",
                "list": f"{json.dumps(head + '[' + json.dumps(''))} + ''.join([',' + _str(cap(x)) for x in {v}]) + ']'",
                }[types[key]]
        if any(key in f for f in shard_fields):
            lines += [f"    {m} = ({emit}) if {v} is not _ABSENT else None"]
            members.append((key, m))
    for n, (key, field, matcher) in enumerate(text):
        if key not in var or not any(field in f for f in shard_fields):
            continue
        v, head, m = var[key], json.dumps(field) + ":[-1", f"m{len(members)}"
        env[f"_found{n}"] = matcher.found
        lines += [f"    {m} = None", f"    if {v} is not _ABSENT:", f"        f = sorted(_found{n}({v}))",
                  f"        {m} = {json.dumps(head)} + ''.join([',' + str(i) for i in f]) + ']' "
                  f"if f else {json.dumps(head + ']')}"]
        members.append((field, m))
    out = []
    for fields in shard_fields:
        mine = [m for key, m in members if key in fields]
        if not mine:
            out.append(repr(guard_member) if guard else "''")
        else:
            first = f"{guard_member!r}, " if guard else ""
            out.append(f"','.join([{first}*[x for x in ({', '.join(mine)},) if x is not None]])")
    lines.append(f"    return ({''.join(o + ', ' for o in out)})")
    exec(compile("\n".join(lines), f"<reader of {len(read)} facts>", "exec"), env)  # noqa: S102
    return env["fill"]


def _key_reader(read, plain, text, shard_fields: list[frozenset], guard: bool):
    """For the match cache: (fill, encoders). fill(facts) -> per shard, a tuple of the values of
    the fields it is sent (_ABSENT for an absent one; lists as tuples, text tests as the sorted
    numbers of those that hold), checked and cut like _reader's; encoders[k](key) -> the very
    members _reader writes for shard k. A key determines its message, and is cheaper to build
    and hash than the message text."""
    env, lines, var, types = _checked_reads(read, lists_as_tuples=True)
    members = []   # (field, variable, kind) in _payload's order
    for key, _type, _name in plain:
        if key in var and any(key in f for f in shard_fields):
            members.append((key, var[key], types[key]))
    for n, (key, field, matcher) in enumerate(text):
        if key not in var or not any(field in f for f in shard_fields):
            continue
        env[f"_found{n}"] = matcher.found
        lines += [f"    t{n} = tuple(sorted(_found{n}({var[key]}))) if {var[key]} is not _ABSENT else _ABSENT"]
        members.append((field, f"t{n}", "text"))
    keys, encoders = [], []
    guard_member = json.dumps(GUARD) + ":1"
    for k, fields in enumerate(shard_fields):
        mine = [(field, v, kind) for field, v, kind in members if field in fields]
        keys.append(f"({''.join(v + ', ' for _f, v, _k in mine)})")
        enc = [f"def enc(key):"]
        if mine:
            enc.append(f"    {''.join(f'a{i}, ' for i in range(len(mine)))}= key")
        enc.append(f"    parts = [{guard_member!r}]" if guard else "    parts = []")
        for i, (field, _v, kind) in enumerate(mine):
            a, head = f"a{i}", json.dumps(field) + ":"
            emit = {"bool": f"{json.dumps(head + 'true')} if {a} else {json.dumps(head + 'false')}",
                    "int": f"{json.dumps(head)} + str({a})",
                    "str": f"{json.dumps(head)} + _str({a})",
                    "list": f"{json.dumps(head + '[' + json.dumps(''))} + ''.join([',' + _str(x) for x in {a}]) + ']'",
                    "text": f"{json.dumps(head + '[-1')} + ''.join([',' + str(x) for x in {a}]) + ']'",
                    }[kind]
            enc += [f"    if {a} is not _ABSENT:", f"        parts.append({emit})"]
        enc.append("    return ','.join(parts)")
        scope = dict(env)
        exec(compile("\n".join(enc), f"<encoder of shard {k}>", "exec"), scope)  # noqa: S102
        encoders.append(scope["enc"])
    lines.append(f"    return ({''.join(k + ', ' for k in keys)})")
    exec(compile("\n".join(lines), f"<key reader of {len(read)} facts>", "exec"), env)  # noqa: S102
    return env["fill"], encoders


def _bad(key: str, type_: str, name: str, v) -> None:
    raise FactTypeError(f"fact {name} ({key}) must be a {type_}, got {v!r:.80}")


def _pack(prepared: Sequence[Prepared], shard_size: int, max_tests: int, max_nodes: int) -> list[list[int]]:
    shards: list[list[int]] = []
    tests = nodes = 0
    for i, p in enumerate(prepared):
        if not shards or len(shards[-1]) >= shard_size or tests + p.tests + 1 > max_tests \
                or nodes + p.nodes + 1 > max_nodes:
            shards.append([])
            tests = nodes = 0
        shards[-1].append(i)
        tests += p.tests + 1   # +1: the _m guard a rule may carry
        nodes += p.nodes + 1
    return shards


def _fields_tested(tree) -> set[str]:
    """The message fields the durable form of a rule tests (a text test reads the _t_ field)."""
    if isinstance(tree, Test):
        return {TEXT_PREFIX + tree.key if tree.is_text else tree.key}
    return set().union(*(_fields_tested(t) for t in tree.items))


def _read_by_plain_test(prepared: Sequence[Prepared], key: str) -> bool:
    """Whether a non-text test reads the fact itself (text tests read only the _t_ field)."""
    def walk(tree) -> bool:
        if isinstance(tree, Test):
            return tree.key == key and not tree.is_text
        return any(walk(t) for t in tree.items)
    return any(walk(p.tree) for p in prepared)


def _has_absent_test(expr) -> bool:
    if isinstance(expr, dict):
        return "$nex" in expr or any(_has_absent_test(v) for v in expr.values())
    if isinstance(expr, list):
        return any(_has_absent_test(v) for v in expr)
    return False


def _culprits(definition: dict, rules: list[Rule], error: Exception) -> list[str]:
    """Which rules durable_rules refuses, found by compiling each alone."""
    problems = []
    for (name, rule_def), rule in zip(definition.items(), rules):
        try:
            handle = _dre.create_ruleset(f"check-{rule.id}", json.dumps({name: rule_def}, ensure_ascii=False))
        except _dre.error as e:
            where = f"{rule.where}: " if rule.where else ""
            problems.append(f"{where}rule '{rule.id}': the rules engine refused it ({e})")
        else:
            _dre.delete_ruleset(handle)
    return problems or [f"the rules engine refused a group of {len(rules)} rules together ({error})"]
