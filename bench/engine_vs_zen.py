"""The product's rules engine beside a peer: durable_rules vs zen-engine (GoRules, Rust core).

    python -m bench.engine_vs_zen [--quick] [--messages N] [--runs N] [--workdir DIR]

The reference workload's 40 rules (bench/workload.py: 11 submit-stage, 29 recipient-stage, 3 of
them shadow) are evaluated over the same precomputed facts by
  (a) the product's compiled durable_rules evaluator: the `DurableRules` objects the daemon's
      Runtime builds, called as Pipeline calls them (`match(facts)`, then the first enforced hit
      decides and shadow hits are recorded);
  (b) the same rules as a zen-engine JSON decision model: per stage one decision table with
      first-hit policy over the enforced rules, rows sorted by (-priority, index) as the
      pipeline orders hits, beside a collect-policy table over the shadow rules (shadow rules
      can never decide), both in one graph and one evaluate() call.
Facts are built once per message and recipient with the product's FactBuilder, as the pipeline
does (message facts; each recipient's own facts, recipient_part). Every pass follows
Pipeline.evaluate: the submit stage on the message facts; when no enforced submit rule decided,
the message's share of the recipient stage's input once (DurableRules.message_part), then each
recipient (match(recipient facts, message part)). Both engines must give the same deciding rule and the same shadow hits for
every stage of every message of the sample (and, checked untimed, the same full list of matching
rules through a collect table over all rules); any disagreement fails the benchmark with the first
differing cases printed.

Fairness: both start from the product's facts dict and do the same input preparation on every
call. The rule values are read and type-checked by semantics.read_facts, and `contains` on a
string / `matches` tests are run by textmatch.TextMatcher (durable_rules' own regex engine is
wrong, see policy/engine/dialect.py), its results travelling as a list of test numbers that the
rules test by membership. DurableRules does this in message_part() (once per message) and
match() (per recipient); the zen side does the same, split the same way, inside the timed loop,
and hands zen a dict. Then the full pipeline: the facts step plus
each engine, per message, from a Submission to the decision.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from policy.engine.semantics import Test, facts_read, prepare_rules, read_facts
from policy.engine.textmatch import TextMatcher
from policy.rules.conditions import All, Any_
from policy.vocabulary import FACTS, engine_key

SAMPLE = 10_000
SERIES = ("durable", "durable as shipped", "zen", "zen evaluate only", "pipeline durable",
          "pipeline durable as shipped", "pipeline zen", "facts")
_MESSAGE_KEYS = frozenset(engine_key(n) for n, f in FACTS.items() if f.stage == "message")
RUNS = 5
TEXT = "_t_"


# ---------------------------------------------------------------------------- the zen translation
class ZenStage:
    """One stage's rules as a zen-engine decision graph; `decide(facts)` answers like the pipeline:
    (id of the enforced rule that decides or None, ids of the shadow rules that match, in order)."""

    def __init__(self, rules, is_shadow, name: str):
        try:
            import zen
        except ImportError:
            raise RuntimeError("zen-engine is not installed: .venv/bin/pip install -e '.[bench]' "
                               "(make bench does)") from None
        prepared = prepare_rules(rules)
        self._read = facts_read(prepared)
        self._probes: dict[str, dict[tuple[str, str], int]] = {}
        ordered = sorted(prepared, key=lambda p: (-p.rule.priority, p.rule.index))
        rows = [(p.rule, self._expr(p.tree)) for p in ordered]
        self._text = [(key, TEXT + key, TextMatcher(list(probes))) for key, probes in self._probes.items()]
        self._read_m = [f for f in self._read if f[0] in _MESSAGE_KEYS]
        self._read_r = [f for f in self._read if f[0] not in _MESSAGE_KEYS]
        self._text_m = [t for t in self._text if t[0] in _MESSAGE_KEYS]
        self._text_r = [t for t in self._text if t[0] not in _MESSAGE_KEYS]
        enforced = [(r.id, e) for r, e in rows if not is_shadow(r)]
        shadow = [(r.id, e) for r, e in rows if is_shadow(r)]
        self.graph = _graph([("enforced", "first", enforced), ("shadow", "collect", shadow)])
        self.check_graph = _graph([("all", "collect", [(r.id, e) for r, e in rows])])
        self._engine = zen.ZenEngine({"loader": {"type": "static", "content": {
            name: self.graph, f"{name}-all": self.check_graph}}})
        self._key, self._check_key = name, f"{name}-all"
        self._evaluate = self._engine.evaluate

    def context(self, facts: dict, message: dict | None = None) -> dict:
        """zen's input: the read, type-checked values with each text fact replaced by the numbers
        of its text tests that hold. With `message` (message_context() of the message facts),
        `facts` are a recipient's own and only their recipient-stage facts are read, as
        DurableRules.match(facts, message_part) does."""
        if message is None:
            return self._prepare(facts, self._read, self._text)
        return {**message, **self._prepare(facts, self._read_r, self._text_r)}

    def message_context(self, message_facts: dict) -> dict:
        """The message facts' share of every recipient's input, prepared once per message."""
        return self._prepare(message_facts, self._read_m, self._text_m)

    @staticmethod
    def _prepare(facts: dict, read, text) -> dict:
        values = read_facts(facts, read)
        for key, field, matcher in text:
            s = values.pop(key, None)
            if s is not None:
                values[field] = list(matcher.found(s))
        return values

    def decide(self, facts: dict, message: dict | None = None) -> tuple:
        result = self._evaluate(self._key, self.context(facts, message))["result"]
        enforced = result.get("enforced")
        return (enforced["rule"] if enforced else None,
                tuple(row["rule"] for row in result.get("shadow", ())))

    def all_matches(self, facts: dict, message: dict | None = None) -> list[str]:
        result = self._evaluate(self._check_key, self.context(facts, message))["result"]
        return [row["rule"] for row in result.get("all", ())]

    # A test of an absent fact is false (semantics.py), exists: false aside: every test is guarded
    # with `!= null`. The tree is already in negation normal form, so `not` appears only inside a
    # guarded leaf and never meets an absent value.
    def _expr(self, tree) -> str:
        if isinstance(tree, (All, Any_)):
            parts = [self._expr(t) for t in tree.items]
            if len(parts) == 1:
                return parts[0]
            return "(" + (" and " if isinstance(tree, All) else " or ").join(parts) + ")"
        t: Test = tree
        key = t.key
        if t.op == "exists":
            return f"{key} {'!=' if t.value else '=='} null"
        if t.is_text:
            kind = "contains" if t.op.endswith("contains") else "matches"
            probes = self._probes.setdefault(key, {})
            n = probes.setdefault((kind, t.value), len(probes))
            field = TEXT + key
            test = f"{n} in {field}" if t.op in ("contains", "matches") else f"not ({n} in {field})"
            return f"({field} != null and {test})"
        v = _literal(t.value)
        if t.op in ("eq", "ne", "lt", "le", "gt", "ge"):
            test = f"{key} {_OPS[t.op]} {v}"
        elif t.op == "in":
            test = f"{key} in {v}"
        elif t.op == "not_in":
            test = f"not ({key} in {v})"
        elif t.op == "contains":        # list membership
            test = f"{v} in {key}"
        elif t.op == "not_contains":
            test = f"not ({v} in {key})"
        else:
            raise AssertionError(f"unhandled test {t}")
        return f"({key} != null and {test})"


_OPS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _literal(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if '"' in value or "\\" in value:
            raise ValueError(f"string {value!r} needs escaping the translation does not do")
        return f'"{value}"'
    raise ValueError(f"no zen literal for {value!r}")


def _graph(tables: list[tuple[str, str, list[tuple[str, str]]]]) -> dict:
    """input -> one decision table per entry (its output under `path`) -> output."""
    nodes = [{"id": "in", "type": "inputNode", "name": "facts", "position": {"x": 0, "y": 0}},
             {"id": "out", "type": "outputNode", "name": "decision", "position": {"x": 400, "y": 0}}]
    edges = []
    for path, policy, rows in tables:
        nodes.append({"id": path, "type": "decisionTableNode", "name": path, "position": {"x": 200, "y": 0},
                      "content": {
                          "hitPolicy": policy, "outputPath": path,
                          # an input without a field: each cell is a whole expression over the facts
                          "inputs": [{"id": "when", "name": "when", "field": ""}],
                          "outputs": [{"id": "rule", "name": "rule", "field": "rule"}],
                          "rules": [{"_id": rid, "when": cond, "rule": json.dumps(rid)} for rid, cond in rows]}})
        edges += [{"id": f"in-{path}", "type": "edge", "sourceId": "in", "targetId": path},
                  {"id": f"{path}-out", "type": "edge", "sourceId": path, "targetId": "out"}]
    return {"contentType": "application/vnd.gorules.decision", "nodes": nodes, "edges": edges}


# ---------------------------------------------------------------------------- the durable side
class DurableStage:
    """The product's evaluator of one stage, answering like Pipeline._decide."""

    def __init__(self, rules, is_shadow):
        self.rules = rules   # a DurableRules (the Runtime's), used as the pipeline uses it
        self._shadow = is_shadow

    def message_context(self, message_facts: dict) -> str:
        return self.rules.message_part(message_facts)

    def decide(self, facts: dict, message: str | None = None) -> tuple:
        hits = self.rules.match(facts) if message is None else self.rules.match(facts, message)
        chosen, shadows = None, []
        for r in hits:
            if self._shadow(r):
                shadows.append(r.id)
            elif chosen is None:
                chosen = r.id
        return chosen, tuple(shadows)

    def all_matches(self, facts: dict, message: str | None = None) -> list[str]:
        hits = self.rules.match(facts) if message is None else self.rules.match(facts, message)
        return [r.id for r in hits]


# ---------------------------------------------------------------------------- facts and runs
@dataclass
class Sample:
    facts: list[tuple[dict, list[dict]]]   # per message: message facts, each recipient's own facts
    subs: list                              # the Submissions, for the full pipeline
    nows: list[datetime]
    accounts: list
    skipped: int                            # recipients whose facts raised (the pipeline: internal error)


def build_sample(loaded, subs: list, start: float, step: float) -> Sample:
    accounts = loaded.policy.accounts
    facts, kept, nows, accs, skipped = [], [], [], [], 0
    for i, sub in enumerate(subs):
        account = accounts.get(sub.account_id)
        if account is None:
            continue
        now = datetime.fromtimestamp(start + i * step, loaded.tz)
        mf = loaded.facts.message_facts(sub, account, now)
        rfs = []
        for raw in sub.destinations:
            try:
                rfs.append(loaded.facts.recipient_part(mf, raw, account))
            except Exception:  # noqa: BLE001 - counted and reported; both engines skip it alike
                skipped += 1
        facts.append((mf, rfs))
        kept.append(sub)
        nows.append(now)
        accs.append(account)
    return Sample(facts, kept, nows, accs, skipped)


# Each pass follows Pipeline.evaluate: the submit stage on the message facts; when no enforced
# submit rule decides, the message's share of the recipient stage's input once, then each recipient.
def outcomes(submit, recipient, facts) -> tuple[list, int]:
    """Each message's decisions, and how many stage evaluations that took."""
    out, calls = [], 0
    for mf, rfs in facts:
        s = submit.decide(mf)
        calls += 1
        if s[0] is None and rfs:
            shared = recipient.message_context(mf)
            r = [recipient.decide(rf, shared) for rf in rfs]
            calls += len(rfs)
        else:
            r = []
        out.append((s, r))
    return out, calls


def rules_pass(submit, recipient, facts) -> None:
    sd, rd, share = submit.decide, recipient.decide, recipient.message_context
    for mf, rfs in facts:
        if sd(mf)[0] is None and rfs:
            shared = share(mf)
            for rf in rfs:
                rd(rf, shared)


def pipeline_pass(loaded, submit, recipient, sample: Sample) -> None:
    """Facts + rules from the Submission on, as Pipeline.evaluate orders them (no counters, no log)."""
    mfacts, rpart = loaded.facts.message_facts, loaded.facts.recipient_part
    sd, rd, share = submit.decide, recipient.decide, recipient.message_context
    for sub, account, now in zip(sample.subs, sample.accounts, sample.nows):
        mf = mfacts(sub, account, now)
        if sd(mf)[0] is None:
            shared = None
            for raw in sub.destinations:
                try:
                    rf = rpart(mf, raw, account)
                except Exception:  # noqa: BLE001 - as in build_sample
                    continue
                if shared is None:
                    shared = share(mf)
                rd(rf, shared)


def facts_pass(loaded, sample: Sample) -> None:
    mfacts, rpart = loaded.facts.message_facts, loaded.facts.recipient_part
    for sub, account, now in zip(sample.subs, sample.accounts, sample.nows):
        mf = mfacts(sub, account, now)
        for raw in sub.destinations:
            try:
                rpart(mf, raw, account)
            except Exception:  # noqa: BLE001 - as in build_sample
                continue


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


class Disagreement(AssertionError):
    pass


def check_agreement(durable, zen, sample: Sample, show: int = 5) -> dict:
    """Every stage decision, shadow list and full match list equal, or Disagreement naming the
    first cases. Returns counts of what the sample decided."""
    ds, dr = durable
    zs, zr = zen
    a, calls = outcomes(ds, dr, sample.facts)
    b, _ = outcomes(zs, zr, sample.facts)
    diffs = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            diffs.append(f"message {i} ({sample.subs[i].request_id}): durable {x} / zen {y}")
    for i, (mf, rfs) in enumerate(sample.facts):   # untimed: every matching rule, enforced or not
        if ds.all_matches(mf) != zs.all_matches(mf):
            diffs.append(f"message {i} submit: all matches durable {ds.all_matches(mf)} / zen {zs.all_matches(mf)}")
        dm, zm = dr.message_context(mf), zr.message_context(mf)
        for k, rf in enumerate(rfs):
            if dr.all_matches(rf, dm) != zr.all_matches(rf, zm):
                diffs.append(f"message {i} recipient {k}: all matches durable {dr.all_matches(rf, dm)} / "
                             f"zen {zr.all_matches(rf, zm)}")
    if diffs:
        raise Disagreement(f"durable_rules and zen-engine disagree on {len(diffs)} cases; the first:\n  "
                           + "\n  ".join(diffs[:show]))
    decided = sum(1 for (s, r) in a if s[0] is not None) + sum(1 for (s, r) in a for d in r if d[0] is not None)
    shadow = sum(len(s[1]) for s, _ in a) + sum(len(d[1]) for _, r in a for d in r)
    return {"messages": len(a), "evaluations": calls, "decided by a rule": decided, "shadow hits": shadow}


def measure(rules_dir: Path, subs: list, workdir: Path, runs: int = RUNS, log=print) -> dict:
    from .pipeline_bench import START, STEP, build_runtime
    runtime = build_runtime(rules_dir, workdir / "var")
    try:
        loaded = runtime.current()
        shadow_all = loaded.policy.platform.shadow_all

        def is_shadow(r) -> bool:   # as Pipeline._is_shadow
            return r.mode == "shadow" or shadow_all

        rules = loaded.policy.rules
        t = time.perf_counter()
        zen = (ZenStage([r for r in rules if r.stage == "submit"], is_shadow, "submit"),
               ZenStage([r for r in rules if r.stage == "recipient"], is_shadow, "recipient"))
        zen_build = time.perf_counter() - t
        # engine against engine: durable_rules without the product's match cache (zen has none);
        # the Runtime's own evaluators, cache as configured, are timed beside as "durable as shipped"
        from policy.engine.durable_engine import DurableRules
        cache = getattr(runtime, "match_cache", 0)

        def compiled(tag: str, cache_size: int) -> tuple:
            return tuple(DurableStage(DurableRules([r for r in rules if r.stage == stage], f"bench-{stage}-{tag}",
                                                   runtime.shard_size, **({"cache_size": cache_size} if cache_size
                                                                          else {})), is_shadow)
                         for stage in ("submit", "recipient"))

        durable = compiled("nocache", 0)
        shipped = (DurableStage(loaded.submit_rules, is_shadow), DurableStage(loaded.recipient_rules, is_shadow))
        sample = build_sample(loaded, subs, START, STEP)
        counts = check_agreement(durable, zen, sample)
        check_agreement(shipped, zen, sample)
        log(f"  agreement: {counts['messages']} messages, {counts['evaluations']} stage evaluations, "
            f"{counts['decided by a rule']} decided by a rule, {counts['shadow hits']} shadow hits: "
            f"durable_rules and zen-engine agree on every one; zen graphs built in {zen_build * 1e3:.0f} ms")
        # one untimed pass each: zen compiles its graph on first use, textmatch fills its DFA cache
        rules_pass(*durable, sample.facts)
        rules_pass(*zen, sample.facts)
        lookups = hits = 0

        def as_shipped(fn):
            """fn(stages) on a fresh copy of the Runtime's evaluators (same match cache size), so
            that every run starts with empty caches, as a daemon meeting the sample would; not
            on the Runtime's own, whose caches already hold the sample."""
            stages = compiled("cached", cache)   # built now, before the timed run

            def run() -> None:
                nonlocal lookups, hits
                try:
                    fn(stages)
                finally:
                    lookups += sum(getattr(st.rules, "cache_lookups", 0) for st in stages)
                    hits += sum(getattr(st.rules, "cache_hits", 0) for st in stages)
                    for st in stages:
                        st.rules.close()
            return run
        # diagnostic: zen's evaluate() alone, on contexts prepared beforehand (what the
        # preparation costs is the difference to "zen")
        contexts = [(zen[0].context(mf), [zen[1].context(rf, zen[1].message_context(mf)) for rf in rfs])
                    for mf, rfs in sample.facts]

        def zen_core() -> None:
            sev, sk, rev, rk = zen[0]._evaluate, zen[0]._key, zen[1]._evaluate, zen[1]._key
            for mc, rcs in contexts:
                if not sev(sk, mc)["result"].get("enforced"):
                    for rc in rcs:
                        rev(rk, rc)

        series = {k: [] for k in SERIES}
        for rep in range(runs):   # interleaved, so that a load spike hits both alike
            for name, fn in (("durable", lambda: rules_pass(*durable, sample.facts)),
                             ("durable as shipped", as_shipped(lambda st: rules_pass(*st, sample.facts))),
                             ("zen", lambda: rules_pass(*zen, sample.facts)),
                             ("zen evaluate only", zen_core),
                             ("pipeline durable", lambda: pipeline_pass(loaded, *durable, sample)),
                             ("pipeline durable as shipped", as_shipped(lambda st: pipeline_pass(loaded, *st, sample))),
                             ("pipeline zen", lambda: pipeline_pass(loaded, *zen, sample)),
                             ("facts", lambda: facts_pass(loaded, sample))):
                series[name].append(timed(fn))
            d, z = series["durable"][-1][0], series["zen"][-1][0]
            log(f"  run {rep + 1}: durable {len(sample.facts) / d:8.0f} decisions/s, "
                f"zen {len(sample.facts) / z:8.0f} decisions/s, zen/durable {d / z:4.2f}")
        n = len(sample.facts)
        out = {"counts": counts, "skipped_recipients": sample.skipped, "zen_build_ms": zen_build * 1e3,
               "messages": n, "runs": runs}
        for name, runs_ in series.items():
            out[name] = {"rate": statistics.median(n / w for w, _ in runs_),
                         "cpu_us": statistics.median(c / n for _, c in runs_) * 1e6,
                         "rates": [n / w for w, _ in runs_]}
        # zen decisions/s ÷ durable decisions/s, per run (the runs are interleaved), then the median
        out["ratio"] = statistics.median(dw / zw for (dw, _), (zw, _) in zip(series["durable"], series["zen"]))
        # the same by CPU time, steadier on the shared machine: durable CPU µs ÷ zen CPU µs
        out["cpu ratio"] = statistics.median(dc / zc for (_, dc), (_, zc) in zip(series["durable"], series["zen"]))
        out["pipeline ratio"] = statistics.median(
            dw / zw for (dw, _), (zw, _) in zip(series["pipeline durable"], series["pipeline zen"]))
        out["shipped ratio"] = statistics.median(
            dw / zw for (dw, _), (zw, _) in zip(series["durable as shipped"], series["zen"]))
        out["shipped cache hit rate"] = hits / lookups if lookups else None
        out["shipped cache size"] = cache
        for st in durable:
            st.rules.close()
        return out
    finally:
        runtime.close()


def report(r: dict) -> str:
    n = r["messages"]
    ev = r["counts"]["evaluations"] / n
    lines = [f"{n} messages ({ev:.2f} stage evaluations each), medians of {r['runs']} runs:"]
    for name in SERIES:
        lines.append(f"  {name:<28} {r[name]['rate']:9,.0f} decisions/s  {1e6 / r[name]['rate']:6.1f} µs wall  "
                     f"{r[name]['cpu_us']:6.1f} µs CPU per decision")
    if r.get("shipped cache hit rate") is not None:
        lines.append(f"  durable as shipped: match cache of {r['shipped cache size']}, "
                     f"{r['shipped cache hit rate']:.0%} of shard evaluations answered from it "
                     f"(empty at the start of each pass)")
    lines.append(f"  zen decisions/s ÷ durable decisions/s (no match cache): rules only {r['ratio']:.2f} "
                 f"(by CPU time {r['cpu ratio']:.2f}), facts + rules: {r['pipeline ratio']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .workload import FULL, QUICK, Workload
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small workload and sample (smoke run)")
    ap.add_argument("--messages", type=int, default=0, help=f"sample size (default {SAMPLE}, quick 1000)")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--workdir", type=Path, help="keep files here (default: a temporary folder)")
    args = ap.parse_args(argv)
    n = args.messages or (1000 if args.quick else SAMPLE)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="smspolicy-zen-"))
    try:
        w = Workload(QUICK if args.quick else FULL)
        rules = w.write(workdir / "rules")
        r = measure(rules, list(w.messages(n)), workdir, args.runs)
        print(report(r))
    except Disagreement as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
