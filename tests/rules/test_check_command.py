"""`smspolicy check`: problems on stderr with exit 1, a summary with exit 0, never a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.cli import main
from policy.rules.loader import check_policy, load_policy

from .helpers import ACCOUNT, write_rules

ROOT = Path(__file__).resolve().parents[2]


def test_ok_summary(tmp_path, capsys):
    write_rules(tmp_path, {"a.yaml": ACCOUNT + "rules:\n  - {id: r, priority: 1, when: {fact: recipient.valid, eq: false}}\n"})
    assert main(["check", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("OK: 1 rules (0 submit, 1 recipient, 0 shadow), 1 accounts, 0 channels, 0 lists, ")
    assert out.rstrip().endswith("version " + load_policy(tmp_path).version)


def test_problems_go_to_stderr_one_per_line(tmp_path, capsys):
    write_rules(tmp_path, {"a.yaml": "accounts:\n  - {id: x}\nrule: []\n"})
    assert main(["check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "a.yaml:2:5: accounts[0]: missing required key 'name'",
        "a.yaml:2:5: accounts[0]: missing required key 'secret'",
        "a.yaml:3:1: rule: unknown section 'rule' (did you mean 'rules'?)",
    ]


def test_default_folder_is_rules_in_the_working_directory(tmp_path, monkeypatch, capsys):
    write_rules(tmp_path / "rules", {"a.yaml": ACCOUNT})
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 0
    assert capsys.readouterr().out.startswith("OK: 0 rules")


GARBAGE = {
    "binary": os.urandom(64) + b"\x00\xff\xfe",
    "empty-rules": b"",
    "deep-flow": b"rules: " + b"[" * 5000 + b"]" * 5000,
    "deep-block": b"".join(b" " * i + b"- \n" for i in range(1500)),
    "deep-condition": b"rules:\n  - id: r\n    priority: 1\n    when: " + b"{not: " * 900 + b"{}" + b"}" * 900,
    "tabs": b"\taccounts: 1\n",
    "python-tag": b"accounts: !!python/object/apply:os.system ['echo hi']\n",
    "anchors": b"a: &x [*x]\n",
    "recursive-alias": b"rules: &r [{id: r, priority: 1, when: &w {not: *w}}, *r]\n",
    "huge-int": b"rules:\n  - {id: r, priority: 99999999999999999999999999, when: {fact: message.hour, eq: 1e999}}\n",
    "bad-keys": b"{[1, 2]: x, null: y, 3: z}\n",
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_gives_problems_not_tracebacks(tmp_path, name):
    (tmp_path / "bad.yaml").write_bytes(GARBAGE[name])
    problems = check_policy(tmp_path)
    if name != "empty-rules":
        assert problems and all(str(p).startswith("bad.yaml:") for p in problems)


def test_cli_process_on_garbage_prints_no_traceback(tmp_path):
    for name, data in GARBAGE.items():
        (tmp_path / f"{name}.yaml").write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "policy", "check", str(tmp_path)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines and all(line.split(":", 1)[0].endswith(".yaml") for line in lines)


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                         st.text(max_size=12), st.sampled_from(["MA:0001", "cmcc", "0x20", "08:00-20:00",
                                                                 "recipient.valid", "eq", "all", "not"]))
keys = st.sampled_from(["rules", "accounts", "channels", "lists", "limits", "platform", "file_blacklist",
                        "keyword_groups", "templates", "id", "name", "secret", "priority", "when", "fact",
                        "eq", "in", "all", "any", "not", "kind", "scope", "numbers", "files", "code",
                        "stage", "carriers", "words", "text", "folder", "matches", "exists"])
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(keys, yaml_values, max_size=4))
def test_random_documents_never_raise(tmp_path, doc):
    import yaml
    (tmp_path / "fuzz.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    for problem in check_policy(tmp_path):
        assert problem.where.line >= 1 and problem.where.column >= 1 and problem.message


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(alphabet="{}[]:-,'\"!&*#|> \n\tab1", max_size=200).map(str.encode))
def test_random_bytes_never_raise(tmp_path, data):
    (tmp_path / "fuzz.yaml").write_bytes(data)
    check_policy(tmp_path)


def test_serve_says_what_the_engine_refuses_and_exits_1_without_a_traceback(tmp_path, monkeypatch, capsys):
    # `check` now refuses everything prepare_rules refuses; should the engine still refuse a rule
    # set at start, serve names the problems and exits non-zero (it died with a traceback)
    from policy.daemon import runtime
    from policy.engine import RuleCompileError

    def refuse(rules, *args, **kwargs):
        raise RuleCompileError(["a.yaml:2:5: rule 'r': the rules engine refused it"])

    monkeypatch.setattr(runtime, "DurableRules", refuse)
    write_rules(tmp_path / "rules", {"a.yaml": ACCOUNT + "rules:\n  - {id: r, priority: 1, when: {fact: recipient.valid, eq: false}}\n"})
    rc = main(["serve", "--rules", str(tmp_path / "rules"), "--data", str(tmp_path / "var"),
               "--counters", "none", "--listen", "127.0.0.1:0"])
    assert rc == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["a.yaml:2:5: rule 'r': the rules engine refused it",
                   f"smspolicy: the rules engine cannot run the rules in {tmp_path / 'rules'}; not starting"]


def test_serve_refuses_what_check_refuses_for_the_engine(tmp_path, capsys):
    write_rules(tmp_path / "rules", {"a.yaml": "rules:\n  - {id: r, code: 'MA:0001', priority: 1, "
                                               "when: {fact: message.length, gt: 9007199254740993}}\n"})
    rc = main(["serve", "--rules", str(tmp_path / "rules"), "--data", str(tmp_path / "var"),
               "--counters", "none", "--listen", "127.0.0.1:0"])
    assert rc == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("a.yaml:2:76: rules[0].when.gt: 9007199254740993 is outside the integers")
    assert out[-1].endswith("are not valid; not starting")
