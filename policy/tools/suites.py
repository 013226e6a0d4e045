"""Policy test suites: YAML files of messages and the decisions the rules must give them.

A suite file (rules/tests/*.yaml):

    suite: recipient rules            # optional; the file name otherwise
    defaults:                         # optional; any case field except name and expect
      at: "2026-11-26T10:00:00+08:00"
      account: "900001"
      src_id: "106900001"
      text: "【云信科技】您的验证码是123456"
    cases:
      - name: a globally blacklisted number is refused
        to: ["13900000001"]
        expect:
          recipients:
            - {action: reject, code: "MA:0001", rule: global-blacklist}

Case fields: `name`, `account`, `src_id`, `to` (a number or a list), `text` (encoded for
`msg_fmt`) or `hex` (raw bytes), `repeat` (the text N times), `msg_fmt` (default 8),
`fee_code`, `parts`, `at` (ISO 8601 with a UTC offset: the frozen time), `counters` (state
before the message: `[{limit: <limit id>, value: N, number: <destination>}]`, number
defaulting to the first destination), `balance` (the account's prepaid balance in fen),
`api_blacklist` (numbers on the API blacklist during the case), and `expect`:
`submit_result` (default 0), `submit_rule`, and `recipients`, one entry per destination with
`action` (accept | reject | hold; default reject when a code is given, else accept), `code`,
`rule`, and optionally `channel` and `shadow` (ids of the shadow rules that must match).

Every case starts from empty counters and the opening balances, so cases never affect each
other. A rule is exercised when it matched in some case; a limit when it refused a recipient.
"""
from __future__ import annotations

import difflib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..daemon.decision import Decision
from ..daemon.pipeline import UnknownAccount
from ..facts.content import codec_for
from ..rules.yamlmarks import (MappingNode, Node, ScalarNode, SequenceNode, Unsupported,
                               YamlSyntaxError, compose, scalar_value)
from ..submission import Submission
from .offline import OfflinePolicy

ACTIONS = ("accept", "reject", "hold")
TOP_KEYS = ("suite", "defaults", "cases")
CASE_KEYS = ("name", "account", "src_id", "to", "text", "hex", "repeat", "msg_fmt", "fee_code",
             "parts", "at", "counters", "balance", "api_blacklist", "expect")
DEFAULT_KEYS = tuple(k for k in CASE_KEYS if k not in ("name", "expect"))
EXPECT_KEYS = ("submit_result", "submit_rule", "recipients")
RECIPIENT_KEYS = ("action", "code", "rule", "channel", "shadow")
COUNTER_KEYS = ("limit", "value", "number")


class SuiteError(ValueError):
    """A suite file that cannot be run; the message starts with file:line."""


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ExpectedRecipient:
    action: str
    code: str
    rule: str
    channel: str | None = None        # None: not checked
    shadow: tuple[str, ...] | None = None

    def describe(self) -> str:
        return _describe(self.action, self.code, self.rule, self.channel, self.shadow)


@dataclass(frozen=True)
class CounterPreset:
    limit: str
    value: int
    number: str | None


@dataclass(frozen=True)
class Case:
    file: str
    line: int
    suite: str
    name: str
    account: str
    src_id: str
    to: tuple[str, ...]
    content: bytes
    msg_fmt: int
    fee_code: str
    parts: int
    at: datetime
    counters: tuple[CounterPreset, ...]
    balance: int | None
    api_blacklist: tuple[str, ...]
    submit_result: int
    submit_rule: str | None
    recipients: tuple[ExpectedRecipient, ...]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Suite:
    file: str
    name: str
    cases: tuple[Case, ...]


@dataclass
class CaseResult:
    case: Case
    ok: bool
    diff: list[str] = field(default_factory=list)     # "- expected" / "+ got" lines
    error: str | None = None                          # the case could not be evaluated
    seconds: float = 0.0
    decision: Decision | None = None


@dataclass
class TestReport:
    results: list[CaseResult] = field(default_factory=list)
    load_errors: list[str] = field(default_factory=list)   # suites that could not be read
    suites: list[Suite] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)          # every rule id, file order
    limits: list[str] = field(default_factory=list)
    exercised: set[str] = field(default_factory=set)        # rule and limit ids
    seconds: float = 0.0

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok and r.error is None]

    @property
    def errors(self) -> list[CaseResult]:
        return [r for r in self.results if r.error is not None]

    @property
    def uncovered_rules(self) -> list[str]:
        return [r for r in self.rules if r not in self.exercised]

    @property
    def uncovered_limits(self) -> list[str]:
        return [lim for lim in self.limits if lim not in self.exercised]

    @property
    def ok(self) -> bool:
        return not self.load_errors and all(r.ok for r in self.results)


# ----------------------------------------------------------------------------- reading suites
def suite_files(folder: str) -> list[str]:
    """The suite files of a folder (*.yaml, *.yml, sorted; sub-folders too)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, n) for n in sorted(filenames)
                  if n.endswith((".yaml", ".yml")) and not n.startswith(".")]
    return found


def load_suite(path: str) -> Suite:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SuiteError(f"{path}: cannot read the file: {e.strerror}") from None
    try:
        root = compose(data)
    except YamlSyntaxError as e:
        raise SuiteError(f"{path}:{e.line}:{e.column}: {e.message}") from None
    r = _Reader(path)
    if not isinstance(root, MappingNode):
        raise r.error(root, "a suite file is a mapping with `cases` (and optionally `suite`, `defaults`)")
    top = r.mapping(root, TOP_KEYS, "suite file")
    name = r.text(top["suite"]) if "suite" in top else Path(path).stem
    defaults = r.mapping(top["defaults"], DEFAULT_KEYS, "defaults") if "defaults" in top else {}
    if "cases" not in top:
        raise r.error(root, "no `cases`: a suite needs at least one case")
    cases_node = top["cases"]
    if not isinstance(cases_node, SequenceNode) or not cases_node.value:
        raise r.error(cases_node, "`cases` must be a non-empty list of cases")
    cases, names = [], {}
    for node in cases_node.value:
        case = r.case(node, defaults, name)
        if case.name in names:
            raise r.error(node, f"case name {case.name!r} is already used at line {names[case.name]}")
        names[case.name] = case.line
        cases.append(case)
    return Suite(path, name, tuple(cases))


class _Reader:
    """Turns YAML nodes into suite values, every error pointing at its file and line."""

    def __init__(self, file: str):
        self.file = file

    def error(self, node: Node | None, message: str) -> SuiteError:
        line = node.start_mark.line + 1 if node is not None else 1
        return SuiteError(f"{self.file}:{line}: {message}")

    def mapping(self, node: Node, keys: tuple[str, ...], what: str) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        out: dict[str, Node] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, ScalarNode) else None
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.error(knode, f"unknown key {key!r} in {what}{hint}; known: {', '.join(keys)}")
            if key in out:
                raise self.error(knode, f"duplicate key {key!r} in {what}")
            out[key] = vnode
        return out

    def _scalar(self, node: Node, what: str):
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"{what} must be a single value")
        value = scalar_value(node)
        if isinstance(value, Unsupported):
            if value.tag.endswith("timestamp"):
                return value.text  # an unquoted ISO time; the `at` reader parses it
            raise self.error(node, f"{what}: unsupported value {value.text!r}")
        return value

    def text(self, node: Node, what: str = "value") -> str:
        value = self._scalar(node, what)
        if value is None or isinstance(value, (bool, float)):
            raise self.error(node, f"{what} must be a string, got {node.value!r}")
        return str(value)

    def integer(self, node: Node, what: str, lo: int = 0, hi: int | None = None) -> int:
        value = self._scalar(node, what)
        if type(value) is not int or value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise self.error(node, f"{what} must be an integer {bound}, got {node.value!r}")
        return value

    def texts(self, node: Node, what: str) -> tuple[str, ...]:
        if isinstance(node, SequenceNode):
            return tuple(self.text(n, what) for n in node.value)
        return (self.text(node, what),)

    def at(self, node: Node) -> datetime:
        raw = self.text(node, "at")
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise self.error(node, f"at: {raw!r} is not an ISO 8601 time "
                                   "(e.g. 2026-11-26T10:00:00+08:00)") from None
        if moment.tzinfo is None:
            raise self.error(node, f"at: {raw!r} has no UTC offset; write it like 2026-11-26T10:00:00+08:00")
        return moment

    def case(self, node: Node, defaults: dict[str, Node], suite: str) -> Case:
        given = self.mapping(node, CASE_KEYS, "a case")
        f = {**defaults, **given}
        line = node.start_mark.line + 1
        if "name" not in given:
            raise self.error(node, "a case needs a `name`")
        name = self.text(given["name"], "name")
        for required in ("account", "to", "at", "expect"):
            if required not in f:
                where = "" if required == "expect" else " (in the case or the suite's defaults)"
                raise self.error(node, f"case {name!r}: `{required}` is missing{where}")
        if "text" in f and "hex" in f:
            raise self.error(node, f"case {name!r}: give `text` or `hex`, not both")
        msg_fmt = self.integer(f["msg_fmt"], "msg_fmt", 0, 255) if "msg_fmt" in f else 8
        to = self.texts(f["to"], "to")
        content = self._content(f, msg_fmt, name)
        counters = tuple(self._counter(n) for n in self._items(f.get("counters"), "counters"))
        expect = self.mapping(f["expect"], EXPECT_KEYS, "expect")
        submit_result = self.integer(expect["submit_result"], "submit_result") if "submit_result" in expect else 0
        submit_rule = self.text(expect["submit_rule"], "submit_rule") if "submit_rule" in expect else None
        recipients = tuple(self._expected(n) for n in self._items(expect.get("recipients"), "recipients"))
        if submit_result == 0 and len(recipients) != len(to):
            raise self.error(f["expect"], f"case {name!r}: expect.recipients has {len(recipients)} entries "
                                          f"for {len(to)} destination(s); give one per destination")
        if submit_result != 0 and recipients:
            raise self.error(f["expect"], f"case {name!r}: a refused submit has no recipient decisions")
        return Case(
            file=self.file, line=line, suite=suite, name=name,
            account=self.text(f["account"], "account"),
            src_id=self.text(f["src_id"], "src_id") if "src_id" in f else "",
            to=to, content=content, msg_fmt=msg_fmt,
            fee_code=self.text(f["fee_code"], "fee_code") if "fee_code" in f else "",
            parts=self.integer(f["parts"], "parts", 0, 255) if "parts" in f else 1,
            at=self.at(f["at"]), counters=counters,
            balance=self.integer(f["balance"], "balance") if "balance" in f else None,
            api_blacklist=self.texts(f["api_blacklist"], "api_blacklist") if "api_blacklist" in f else (),
            submit_result=submit_result, submit_rule=submit_rule, recipients=recipients)

    def _items(self, node: Node | None, what: str) -> list[Node]:
        if node is None:
            return []
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"{what} must be a list")
        return node.value

    def _content(self, f: dict[str, Node], msg_fmt: int, name: str) -> bytes:
        repeat = self.integer(f["repeat"], "repeat", 1) if "repeat" in f else 1
        if "hex" in f:
            raw = self.text(f["hex"], "hex")
            try:
                return bytes.fromhex(raw) * repeat
            except ValueError:
                raise self.error(f["hex"], f"case {name!r}: hex is not hexadecimal bytes") from None
        if "text" not in f:
            return b""
        text = self.text(f["text"], "text") * repeat
        codec = codec_for(msg_fmt)
        try:
            return text.encode(codec)
        except UnicodeEncodeError as e:
            raise self.error(f["text"], f"case {name!r}: {text[e.start:e.end]!r} cannot be written in "
                                        f"msg_fmt {msg_fmt} ({codec}); use `hex` for such content") from None

    def _counter(self, node: Node) -> CounterPreset:
        m = self.mapping(node, COUNTER_KEYS, "a counter")
        for key in ("limit", "value"):
            if key not in m:
                raise self.error(node, f"a counter needs `{key}`")
        return CounterPreset(self.text(m["limit"], "limit"), self.integer(m["value"], "value"),
                             self.text(m["number"], "number") if "number" in m else None)

    def _expected(self, node: Node) -> ExpectedRecipient:
        m = self.mapping(node, RECIPIENT_KEYS, "an expected recipient")
        code = self.text(m["code"], "code") if "code" in m else ""
        action = self.text(m["action"], "action") if "action" in m else ("reject" if code else "accept")
        if action not in ACTIONS:
            raise self.error(m["action"], f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        return ExpectedRecipient(
            action=action, code=code,
            rule=self.text(m["rule"], "rule") if "rule" in m else "",
            channel=self.text(m["channel"], "channel") if "channel" in m else None,
            shadow=tuple(sorted(self.texts(m["shadow"], "shadow"))) if "shadow" in m else None)


# ----------------------------------------------------------------------------- running
def run_suites(rules_dir: str, suites_dir: str | None = None, segment_db: str = "") -> TestReport:
    """Run every suite of `suites_dir` (default RULES_DIR/tests) against `rules_dir`.

    PolicyError when the rules themselves do not load.
    """
    started = time.perf_counter()
    report = TestReport()
    folder = suites_dir or os.path.join(rules_dir, "tests")
    with OfflinePolicy(rules_dir, segment_db) as offline:
        report.rules = [r.id for r in offline.policy.rules]
        report.limits = [lim.id for lim in offline.policy.limits]
        limit_ids = set(report.limits)
        for path in suite_files(folder):
            try:
                suite = load_suite(path)
            except SuiteError as e:
                report.load_errors.append(str(e))
                continue
            report.suites.append(suite)
            for case in suite.cases:
                result = run_case(offline, case)
                report.results.append(result)
                d = result.decision
                if d is not None:
                    report.exercised.update(m.rule_id for m in d.matches)
                    report.exercised.update(r.rule_id for r in d.recipients if r.rule_id in limit_ids)
    if not report.suites and not report.load_errors:
        report.load_errors.append(f"{folder}: no suite files (*.yaml)")
    report.seconds = time.perf_counter() - started
    return report


def run_case(offline: OfflinePolicy, case: Case) -> CaseResult:
    started = time.perf_counter()
    offline.reset_counters()
    now = case.at.timestamp()
    sub = Submission(request_id=f"test:{case.file}:{case.line}", account_id=case.account,
                     frontend_id="smspolicy-test", src_id=case.src_id, destinations=list(case.to),
                     content=case.content, msg_fmt=case.msg_fmt, fee_code=case.fee_code,
                     parts=case.parts)
    api = offline.runtime.api_blacklist
    added = [n for n in case.api_blacklist if not api.contains(n)]
    try:
        for preset in case.counters:
            offline.preset_counter(sub, now, preset.limit, preset.number or case.to[0], preset.value)
        if case.balance is not None:
            _set_balance(offline, case.account, case.balance)
        if added:
            api.add(added)
        decision = offline.evaluate(sub, now)
    except (ValueError, UnknownAccount) as e:
        return CaseResult(case, False, error=f"{case.where}: case {case.name!r}: {e}",
                          seconds=time.perf_counter() - started)
    finally:
        if added:
            api.remove(added)
    diff = compare(case, decision)
    return CaseResult(case, not diff, diff, seconds=time.perf_counter() - started, decision=decision)


def _set_balance(offline: OfflinePolicy, account_id: str, balance: int) -> None:
    account = offline.policy.accounts.get(account_id)
    if account is None or account.billing != "prepaid":
        raise ValueError(f"balance: account {account_id} is not a prepaid account")
    store = offline.pipeline.counters
    store.top_up(account_id, balance - (store.balance(account_id) or 0))


def compare(case: Case, d: Decision) -> list[str]:
    """The differences between what the case expects and the decision, as -/+ line pairs."""
    diff: list[str] = []
    if d.submit_result != case.submit_result or (
            case.submit_rule is not None and d.submit_rule_id != case.submit_rule):
        diff += [f"- submit: {_submit(case.submit_result, case.submit_rule)}",
                 f"+ submit: {_submit(d.submit_result, d.submit_rule_id)}"]
        return diff
    for i, (want, got) in enumerate(zip(case.recipients, d.recipients)):
        shadow = tuple(sorted(got.shadow_rule_ids))
        same = ((want.action, want.code, want.rule) == (got.action, got.code, got.rule_id)
                and want.channel in (None, got.channel_id) and want.shadow in (None, shadow))
        if not same:
            label = f"recipients[{i}] {got.destination}"
            shown = shadow if shadow or want.shadow is not None else None
            diff += [f"- {label}: {want.describe()}",
                     f"+ {label}: {_describe(got.action, got.code, got.rule_id, got.channel_id, shown)}"]
    return diff


def _submit(result: int, rule: str | None) -> str:
    if result == 0:
        return "0 (accepted for per-recipient decisions)"
    return f"{result}" + (f" rule={rule}" if rule else "")


def _describe(action: str, code: str, rule: str, channel: str | None, shadow) -> str:
    parts = [action]
    if code:
        parts.append(code)
    parts.append(f"rule={rule or '-'}")
    if channel is not None:
        parts.append(f"channel={channel or '-'}")
    if shadow is not None:
        parts.append(f"shadow=[{', '.join(shadow)}]")
    return " ".join(parts)


# ----------------------------------------------------------------------------- JUnit XML
def write_junit(report: TestReport, path: str, strict: bool = False) -> None:
    """One <testsuite> per suite file, plus "coverage": a test per rule and limit, skipped
    (failed with `strict`) when no case exercises it."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="smspolicy test")
    by_file: dict[str, list[CaseResult]] = {}
    for result in report.results:
        by_file.setdefault(result.case.file, []).append(result)
    for suite in report.suites:
        results = by_file.get(suite.file, [])
        el = ET.SubElement(root, "testsuite", name=suite.name, file=suite.file,
                           tests=str(len(results)),
                           failures=str(sum(1 for r in results if not r.ok and r.error is None)),
                           errors=str(sum(1 for r in results if r.error is not None)),
                           time=f"{sum(r.seconds for r in results):.3f}")
        for r in results:
            tc = ET.SubElement(el, "testcase", classname=_classname(suite.file), name=r.case.name,
                               file=suite.file, line=str(r.case.line), time=f"{r.seconds:.3f}")
            if r.error is not None:
                ET.SubElement(tc, "error", message=r.error).text = r.error
            elif not r.ok:
                ET.SubElement(tc, "failure", message="decision differs from the expected one").text = \
                    "\n".join(r.diff)
    for error in report.load_errors:
        el = ET.SubElement(root, "testsuite", name=error.split(":", 1)[0], tests="1", failures="0",
                           errors="1")
        tc = ET.SubElement(el, "testcase", classname="suite", name="load")
        ET.SubElement(tc, "error", message=error).text = error
    ids = [("rule", r) for r in report.rules] + [("limit", lim) for lim in report.limits]
    uncovered = sum(1 for _, i in ids if i not in report.exercised)
    cov = ET.SubElement(root, "testsuite", name="coverage", tests=str(len(ids)),
                        failures=str(uncovered if strict else 0),
                        skipped=str(0 if strict else uncovered), errors="0")
    for kind, ident in ids:
        tc = ET.SubElement(cov, "testcase", classname=f"coverage.{kind}", name=ident)
        if ident not in report.exercised:
            message = f"no test exercises {kind} {ident}"
            ET.SubElement(tc, "failure" if strict else "skipped", message=message)
    for attr, value in (("tests", sum(int(s.get("tests")) for s in root)),
                        ("failures", sum(int(s.get("failures")) for s in root)),
                        ("errors", sum(int(s.get("errors")) for s in root)),
                        ("time", f"{report.seconds:.3f}")):
        root.set(attr, str(value))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _classname(file: str) -> str:
    stem = os.path.splitext(os.path.relpath(file))[0]
    return stem.replace(os.sep, ".").lstrip(".")
