"""The loader: building the model, normalizing values, merging files, versions, positions."""
import shutil
import time
from textwrap import dedent
from datetime import time as clock
from pathlib import Path

import pytest

from policy.rules.conditions import All, Any_, Compare, Not
from policy.rules.errors import PolicyError
from policy.rules.loader import check_policy, load_policy, policy_files, version_of
from policy.rules.model import Where

from .helpers import ACCOUNT, problems, write_rules

RULE = """
rules:
  - id: {id}
    priority: {priority}
    code: "MA:0001"
    when: {{fact: recipient.blacklisted.global, eq: true}}
"""


def test_values_are_normalized(tmp_path):
    write_rules(tmp_path, {"a.yaml": """
        accounts:
          - id: 900001                 # an unquoted id keeps its digits as written
            name: demo
            secret: 000123
            cmpp_versions: [0x20, "0x21", 48]
            fee_codes: ["000010", "0", 5]
            signatures: [【云信科技】, 甲公司]
            content_filing: off        # YAML 1.1 reads a bare off as false; here it means "off"
            bound_ips: [127.0.0.1, 10.1.2.3/8]
            login_window: "21:00-07:30"
            access_code: 106900001
        lists:
          - id: bl
            kind: numbers
            scope: global
            numbers: ["+8613900000001", "008613900000002", "8613900000003", "13900000004", 13900000005]
          - id: seg
            kind: segments
            scope: global
            segments: ["134", "1340000", 13511]
    """})
    policy = load_policy(tmp_path)
    account = policy.accounts["900001"]
    assert account.secret == "000123"
    assert account.cmpp_versions == (0x20, 0x21, 0x30)
    assert account.fee_codes == ("10", "0", "5")
    assert account.signatures == ("云信科技", "甲公司")
    assert account.content_filing == "off"
    assert account.bound_ips == ("127.0.0.1/32", "10.0.0.0/8")
    assert account.login_window.start == clock(21, 0) and account.login_window.end == clock(7, 30)
    assert account.login_window.contains(clock(23, 0)) and not account.login_window.contains(clock(12, 0))
    assert account.access_code == "106900001"
    assert account.where == Where("a.yaml", 2, 5, "accounts[0]")
    assert policy.lists["bl"].entries == {f"1390000000{i}" for i in range(1, 6)}
    assert policy.lists["seg"].entries == {"134", "1340000", "13511"}


def test_defaults_come_from_the_model(tmp_path):
    write_rules(tmp_path, {"a.yaml": ACCOUNT + RULE.format(id="r", priority=5)})
    policy = load_policy(tmp_path)
    account = policy.accounts["900001"]
    assert (account.access_mode, account.status, account.cmpp_versions, account.msg_formats) == \
        ("cmpp", "active", (0x20, 0x21), (8,))
    rule = policy.rules[0]
    assert (rule.stage, rule.action, rule.mode, rule.description) == ("recipient", "reject", "enforce", "")
    assert policy.platform.max_length == 1000 and policy.file_blacklist is None


def test_sections_merge_across_files_and_rule_index_follows_file_names(tmp_path):
    write_rules(tmp_path, {
        "b.yaml": RULE.format(id="b1", priority=5) + "  - id: b2\n    priority: 6\n    when: {fact: recipient.valid, eq: false}\n",
        "a.yaml": ACCOUNT + RULE.format(id="a1", priority=7),
        "sub/c.yml": RULE.format(id="c1", priority=8),
    })
    policy = load_policy(tmp_path)
    assert [(r.id, r.index) for r in policy.rules] == [("a1", 0), ("b1", 1), ("b2", 2), ("c1", 3)]
    assert policy.rules[2].code is None
    assert policy.rules[3].where.file == "sub/c.yml"


def test_duplicate_ids_across_files_name_the_first(tmp_path):
    write_rules(tmp_path, {"a.yaml": RULE.format(id="same", priority=1),
                           "b.yaml": RULE.format(id="same", priority=2)})
    assert problems(tmp_path) == [
        "b.yaml:2:9: rules[0].id: duplicate rule id 'same' (first defined at a.yaml:2:9)"]


def test_every_problem_of_every_file_is_reported_sorted(tmp_path):
    write_rules(tmp_path, {
        "b.yaml": "rules:\n  - id: x\n    priority: 0\n    when: {fact: nope, eq: 1}\n",
        "a.yaml": "accounts:\n  - id: '1'\n    name: n\n    secret: s\n    status: gone\n    max_connections: 0\n",
        "c.yaml": "[unclosed\n",
    })
    assert problems(tmp_path) == [
        "a.yaml:5:13: accounts[0].status: 'gone' is not one of: active, disabled",
        "a.yaml:6:22: accounts[0].max_connections: must be between 1 and 1000, got 0",
        "b.yaml:3:15: rules[0].priority: must be between 1 and 65535, got 0",
        "b.yaml:4:18: rules[0].when.fact: unknown fact 'nope' (the facts are listed in docs/rules.md)",
        "c.yaml:2:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at line 1, column 1)",
    ]


def test_conditions_become_the_typed_tree(tmp_path):
    write_rules(tmp_path, {"a.yaml": """
        keyword_groups:
          - {id: gambling, words: [博彩]}
        rules:
          - id: r
            priority: 10
            when:
              all:
                - {fact: recipient.carrier, in: [cmcc, cucc]}
                - not: {fact: message.keyword_groups, contains: gambling}
                - any:
                    - {fact: message.dest_count, ge: 2}
                    - {fact: recipient.number, eq: "+8613800138000"}
                    - {fact: message.fee_code, eq: "000010"}
    """})
    when = load_policy(tmp_path).rules[0].when
    assert when == All((
        Compare("recipient.carrier", "in", ("cmcc", "cucc")),
        Not(Compare("message.keyword_groups", "contains", "gambling")),
        Any_((Compare("message.dest_count", "ge", 2),
              Compare("recipient.number", "eq", "13800138000"),
              Compare("message.fee_code", "eq", "10"))),
    ))
    hash(when)  # frozen all the way down: usable as a cache key


def test_an_exists_false_only_rule_is_accepted(tmp_path):
    write_rules(tmp_path, {"a.yaml": """
        rules:
          - id: no-template
            priority: 10
            when: {fact: message.template_id, exists: false}
    """})
    assert load_policy(tmp_path).rules[0].when == Compare("message.template_id", "exists", False)


def test_deep_conditions_are_refused_not_crashed(tmp_path):
    depth = 200
    when = "{not: " * depth + "{fact: recipient.valid, eq: true}" + "}" * depth
    write_rules(tmp_path, {"a.yaml": f"rules:\n  - id: r\n    priority: 1\n    when: {when}\n"})
    [p] = problems(tmp_path)
    assert "conditions are nested more than 32 levels deep" in p


def test_submit_rule_may_use_message_facts_and_hold_only_at_recipient_stage(tmp_path):
    write_rules(tmp_path, {"a.yaml": """
        rules:
          - id: s
            stage: submit
            action: hold
            code: "17"
            priority: 10
            when: {fact: message.signature_registered, eq: false}
    """})
    assert problems(tmp_path) == [
        "a.yaml:4:13: rules[0].action: only recipient-stage rules can hold a message for audit"]


def test_list_scope_and_kind_must_agree(tmp_path):
    write_rules(tmp_path, {"a.yaml": ACCOUNT + dedent("""
        lists:
          - id: l1
            kind: numbers
            scope: customer
          - id: l2
            kind: numbers
            scope: global
            account: "900001"
            segments: ["139"]
          - id: l3
            kind: segments
            scope: api
    """)})
    assert problems(tmp_path) == [
        "a.yaml:9:12: lists[0].scope: a list with scope customer needs 'account'",
        "a.yaml:13:5: lists[1].account: 'account' is only for lists with scope customer, this one has scope global",
        "a.yaml:14:5: lists[1].segments: 'segments' is for lists of kind segments; this list has kind numbers, "
        "use 'numbers'",
        "a.yaml:16:11: lists[2].kind: the API blacklist holds numbers: scope api needs kind numbers",
    ]


def test_cmpp_account_ids_fit_source_addr_and_http_channels_need_a_url(tmp_path):
    write_rules(tmp_path, {"a.yaml": """
        accounts:
          - {id: "9000001", name: long, secret: s}
          - {id: "9000002", name: long http, secret: s, access_mode: http}
        channels:
          - {id: h, name: http, carriers: [cmcc], protocol: http}
    """})
    assert problems(tmp_path) == [
        "a.yaml:2:10: accounts[0].id: a CMPP account id is the CONNECT Source_Addr: at most 6 characters",
        "a.yaml:5:53: channels[0].protocol: a channel with protocol http needs http_url",
    ]


def test_keywords_must_survive_normalization(tmp_path):
    write_rules(tmp_path, {"a.yaml": "keyword_groups:\n  - {id: g, words: [博彩, '★ ！']}\n"})
    assert problems(tmp_path) == [
        "a.yaml:2:25: keyword_groups[0].words[1]: the keyword '★ ！' is empty once spaces, punctuation "
        "and symbols are removed (content is compared without them)"]


def test_template_placeholders_are_checked(tmp_path):
    write_rules(tmp_path, {"a.yaml": "templates:\n  - {id: t, text: '您的验证码是{code，请查收'}\n"})
    [p] = problems(tmp_path)
    assert p.startswith("a.yaml:2:19: templates[0].text: placeholders are written {name}")


def test_a_section_defined_twice_is_refused(tmp_path):
    write_rules(tmp_path, {"a.yaml": "platform: {max_length: 500}\n", "b.yaml": "platform: {}\n"})
    assert problems(tmp_path) == ["b.yaml:1:1: platform: platform is already set at a.yaml:1:1"]


def test_an_empty_section_or_file_is_accepted(tmp_path):
    write_rules(tmp_path, {"a.yaml": ACCOUNT + "rules:\n", "b.yaml": "# nothing here yet\n", "c.yaml": ""})
    policy = load_policy(tmp_path)
    assert policy.rules == () and list(policy.accounts) == ["900001"]


def test_missing_or_empty_folder(tmp_path):
    assert problems(tmp_path / "nope") == [
        f"{tmp_path / 'nope'}:1:1: the rules folder does not exist or is not a folder"]
    assert problems(tmp_path) == [".:1:1: no rules files (*.yaml) in the rules folder"]


def test_tests_folder_and_file_blacklist_folder_are_not_rules(tmp_path):
    write_rules(tmp_path, {
        "a.yaml": ACCOUNT + "file_blacklist: {folder: live}\n",
        "tests/suite.yaml": "not: [a, rules, file\n",
        "live/numbers.yaml": "- 13900000001\n",
        "live/more.txt": "13900000002\n",
    })
    policy = load_policy(tmp_path)
    assert policy.file_blacklist.folder == str((tmp_path / "live").resolve())
    assert policy.file_blacklist.poll_seconds == 1.0
    assert set(policy_files(tmp_path)) == {"a.yaml"}


def test_version_covers_yaml_and_entry_files_but_not_live_data(tmp_path):
    files = {
        "a.yaml": ACCOUNT + dedent("""
            lists:
              - {id: bl, kind: numbers, scope: global, files: [lists/bl.txt]}
            file_blacklist: {folder: live}
        """),
        "lists/bl.txt": "13900000001\n",
        "live/x.txt": "13900000002\n",
    }
    write_rules(tmp_path / "one", files)
    v1 = load_policy(tmp_path / "one").version
    assert len(v1) == 16 and int(v1, 16) >= 0
    assert set(policy_files(tmp_path / "one")) == {"a.yaml", "lists/bl.txt"}
    assert version_of(policy_files(tmp_path / "one")) == v1

    shutil.copytree(tmp_path / "one", tmp_path / "two")
    assert load_policy(tmp_path / "two").version == v1  # content, not location

    (tmp_path / "one/live/x.txt").write_text("13900000003\n")
    assert load_policy(tmp_path / "one").version == v1
    (tmp_path / "one/lists/bl.txt").write_text("13900000004\n")
    v2 = load_policy(tmp_path / "one").version
    assert v2 != v1
    (tmp_path / "one/a.yaml").write_text((tmp_path / "one/a.yaml").read_text() + "# a comment\n")
    assert load_policy(tmp_path / "one").version not in (v1, v2)


def test_entry_file_problems_are_capped(tmp_path):
    write_rules(tmp_path, {
        "a.yaml": "lists:\n  - {id: bl, kind: numbers, scope: global, files: [bl.txt]}\n",
        "bl.txt": "13900000001\n" + "bad\n" * 30,
    })
    got = problems(tmp_path)
    assert len(got) == 21
    assert got[0] == "bl.txt:2:1: 'bad' is not an 11-digit mobile number (+86, 0086 or 86 may precede it)"
    assert got[-1] == "bl.txt:31:1: and 10 more bad lines"


def test_a_million_number_entry_file_loads_in_seconds(tmp_path):
    numbers = "".join(f"1{3900000000 + i:010d}\n" for i in range(1_000_000))
    write_rules(tmp_path, {
        "a.yaml": "lists:\n  - {id: big, kind: numbers, scope: global, files: [big.txt]}\n",
        "big.txt": numbers.replace("13900000007\n", "+8613900000007\n"),
    })
    started = time.perf_counter()
    policy = load_policy(tmp_path)
    elapsed = time.perf_counter() - started
    assert policy.lists["big"].files == ("big.txt",)
    assert elapsed < 3.0, f"loading took {elapsed:.2f}s"


def test_policy_error_carries_problem_objects(tmp_path):
    write_rules(tmp_path, {"a.yaml": "accounts:\n  - {id: x, name: n}\n"})
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path)
    [problem] = err.value.problems
    assert problem.where == Where("a.yaml", 2, 5, "accounts[0]")
    assert problem.message == "missing required key 'secret'"
    assert check_policy(tmp_path) == err.value.problems


def test_problems_without_a_yaml_path_read_file_line_column(tmp_path):
    write_rules(tmp_path, {"a.yaml": b"accounts: \xff\n"})
    assert problems(tmp_path) == ["a.yaml:1:11: not UTF-8 text (byte 0xff)"]


def test_symlinked_entry_file_outside_the_folder(tmp_path):
    outside = tmp_path / "shared.txt"
    outside.write_text("13900000001\n")
    write_rules(tmp_path / "rules", {"a.yaml": "lists:\n  - {id: bl, kind: numbers, scope: global, files: [../shared.txt]}\n"})
    assert set(policy_files(tmp_path / "rules")) == {"a.yaml", "../shared.txt"}
    assert Path(load_policy(tmp_path / "rules").source_dir) == (tmp_path / "rules").resolve()


def test_a_symlink_loop_is_walked_once(tmp_path):
    write_rules(tmp_path, {"sub/a.yaml": ACCOUNT})
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)
    assert set(policy_files(tmp_path)) == {"sub/a.yaml"}


def test_a_bad_stage_is_reported_once(tmp_path):
    write_rules(tmp_path, {"a.yaml": "rules:\n  - {id: r, stage: sumbit, code: 17, priority: 1, when: {fact: message.empty, eq: true}}\n"})
    assert problems(tmp_path) == ["a.yaml:2:20: rules[0].stage: 'sumbit' is not one of: submit, recipient"]


def test_a_loaded_policy_keeps_the_bytes_its_version_hashes(tmp_path):
    # the version store gets these, not a second read of the folder: an edit landing right after
    # a reload once stored the new files under the old version's id, and later reloads of that
    # content were refused as "already stored with different files"
    write_rules(tmp_path, {"a.yaml": ACCOUNT, "lists/bl.txt": "13900000001\n"})
    policy = load_policy(tmp_path)
    hashed = dict(policy.files)
    assert hashed == policy_files(tmp_path) and version_of(hashed) == policy.version
    (tmp_path / "a.yaml").write_text(ACCOUNT + "# edited after the load\n")
    assert policy.files == hashed and version_of(policy.files) == policy.version


# --- check refuses what the daemon's engine refuses -------------------------------------------

def test_check_refuses_every_rule_the_engine_compiler_refuses(tmp_path):
    # each of these passed `check` once, then `serve` died compiling it (RuleCompileError)
    from policy.engine import RuleCompileError
    from policy.engine.semantics import prepare_rules
    from policy.rules.model import Rule
    cases = {
        "{fact: message.hour, in: [%s]}" % ", ".join(map(str, range(33))):
            Compare("message.hour", "in", tuple(range(33))),
        "{fact: message.length, gt: 9007199254740993}": Compare("message.length", "gt", 9007199254740993),
        "{all: [%s]}" % ", ".join(["{any: [{fact: message.hour, eq: 1}, {fact: message.hour, eq: 2}]}"] * 16):
            All(tuple(Any_((Compare("message.hour", "eq", 1), Compare("message.hour", "eq", 2))) for _ in range(16))),
    }
    for when, cond in cases.items():
        with pytest.raises(RuleCompileError):
            prepare_rules([Rule(id="r", stage="recipient", action="reject", code="MA:0001", priority=10,
                                mode="enforce", description="", when=cond, index=0, where=None)])
        write_rules(tmp_path, {"a.yaml": f"rules:\n  - {{id: r, code: 'MA:0001', priority: 10, when: {when}}}\n"})
        found = problems(tmp_path)
        assert len(found) == 1 and found[0].startswith("a.yaml:2:"), found
        assert "rules[0].when" in found[0]


def test_the_largest_in_list_and_integers_the_engine_takes_are_accepted(tmp_path):
    write_rules(tmp_path, {"a.yaml": "rules:\n"
                           "  - {id: a, code: 'MA:0001', priority: 10, when: {fact: message.hour, in: [%s]}}\n"
                           % ", ".join(map(str, range(32)))
                           + "  - {id: b, code: 'MA:0001', priority: 10, when: {fact: message.length, le: 9007199254740992}}\n"})
    assert problems(tmp_path) == []


def test_an_alias_bomb_in_a_condition_is_refused_fast(tmp_path):
    lines = ["rules:", "  - {id: r0, code: 'MA:0001', priority: 10, when: &c0 {fact: message.hour, eq: 1}}"]
    for k in range(1, 9):  # 10**8 conditions once expanded
        lines.append(f"  - {{id: r{k}, code: 'MA:0001', priority: 10, when: &c{k} {{any: [{', '.join([f'*c{k-1}'] * 10)}]}}}}")
    write_rules(tmp_path, {"a.yaml": "\n".join(lines) + "\n"})
    start = time.monotonic()
    found = problems(tmp_path)
    assert time.monotonic() - start < 10
    assert len(found) == 7  # r0 and r1 (10 tests) are fine
    assert found[0].endswith("the condition has 100 fact tests; the rules engine evaluates at most 60 per rule — split the rule")
    assert all("more than 1000 conditions" in p for p in found[1:])


# --- file names, values and paths that used to raise ------------------------------------------

def test_a_file_name_that_is_not_utf8_is_a_problem(tmp_path, capsys):
    import os
    from policy.cli import main
    name = "规则.yaml".encode("gbk")  # unzipped from an archive made on a Chinese Windows
    with open(os.path.join(os.fsencode(tmp_path), name), "wb") as f:
        f.write(b"rules: [\n")
    expected = r"\xb9\xe6\xd4\xf2.yaml:1:1: the file name is not UTF-8; rename the file"
    assert problems(tmp_path) == [expected]
    assert main(["check", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [expected]


def test_a_timezone_folder_and_a_bad_url_port_are_problems(tmp_path):
    write_rules(tmp_path, {"a.yaml": ACCOUNT + "    push_url: 'http://host:99999/x'\nplatform: {timezone: America}\n"})
    assert problems(tmp_path) == [
        "a.yaml:5:15: accounts[0].push_url: expected an http:// or https:// URL, got 'http://host:99999/x' "
        "(Port out of range 0-65535)",
        "a.yaml:6:22: platform.timezone: unknown time zone 'America' (e.g. Asia/Shanghai)",
    ]


def test_a_nul_in_the_file_blacklist_folder_is_a_problem(tmp_path):
    write_rules(tmp_path, {"a.yaml": 'file_blacklist: {folder: "bl\\0x"}\n'})
    assert problems(tmp_path) == [
        "a.yaml:1:26: file_blacklist.folder: a path cannot contain a NUL character, got 'bl\\x00x'"]


# --- one syntax error, one line ---------------------------------------------------------------

def test_a_syntax_error_does_not_make_every_reference_to_its_ids_unknown(tmp_path):
    write_rules(tmp_path, {
        "channels.yaml": "channels:\n  - id: ch-a\n    name: a\n    carriers: [cmcc]\n\trate: 5\n",
        "accounts.yaml": ACCOUNT + "    channels: [ch-a]\n",
        "policy.yaml": "rules:\n  - {id: r, code: 'MA:0001', priority: 1, when: {fact: route.channel, eq: ch-a}}\n",
        "lists.yaml": "lists:\n  - {id: l, kind: numbers, scope: customer, account: '900009'}\n",
    })
    found = problems(tmp_path)
    assert len(found) == 2, found
    assert found[0].startswith("channels.yaml:5:1: YAML syntax error: ")
    # references to sections the broken file does not define are still checked
    assert found[1] == "lists.yaml:2:54: lists[0].account: unknown account '900009' (did you mean '900001'?)"


# --- empty sections and bare numbers, as docs/rules.md says -----------------------------------

def test_an_empty_platform_or_file_blacklist_section_is_fine(tmp_path):
    write_rules(tmp_path, {"a.yaml": "platform:\nfile_blacklist:\n" + ACCOUNT,
                           "b.yaml": "platform: {max_length: 500}\n"})
    policy = load_policy(tmp_path)
    assert policy.platform.max_length == 500 and policy.file_blacklist is None


def test_a_bare_number_where_a_string_is_expected_is_taken_as_written(tmp_path):
    write_rules(tmp_path, {"a.yaml": """
        accounts:
          - {id: "900001", name: 2.0, secret: 888.888}
          - {id: "900002", name: b, secret: 1_000}
          - {id: "900003", name: c, secret: 0x1F}
        """})
    accounts = load_policy(tmp_path).accounts
    assert [accounts[i].secret for i in ("900001", "900002", "900003")] == ["888.888", "1_000", "0x1F"]
    assert accounts["900001"].name == "2.0"


# --- entry files: check reads the lines the fact builder reads --------------------------------

def test_entry_file_lines_end_where_the_fact_builder_ends_them(tmp_path):
    from policy.facts.lists import ListIndex
    from policy.facts.numbers import iter_numbers, open_number_file
    from policy.rules.entries import entry_lines
    data = b"13900000001\x0c13900000002\n13900000003\xe2\x80\xa813900000004\r\n13900000005\r13900000006\n"
    write_rules(tmp_path, {"lists.yaml": "lists:\n  - {id: gbl, kind: numbers, scope: global, files: [bl.txt]}\n",
                           "bl.txt": data})
    with open_number_file(tmp_path / "bl.txt") as f:
        assert [line.rstrip("\n") for line in f] == entry_lines(data.decode())
    # a form feed or U+2028 does not end a line for the builder, so check refuses the line
    # instead of passing two numbers the builder would never list
    assert problems(tmp_path) == [
        "bl.txt:1:1: '13900000001\\x0c13900000002' is not an 11-digit mobile number (+86, 0086 or 86 may precede it)",
        "bl.txt:2:1: '13900000003\\u202813900000004' is not an 11-digit mobile number (+86, 0086 or 86 may precede it)",
    ]
    (tmp_path / "bl.txt").write_bytes(b"13900000005\r13900000006\r\n13900000007\n")
    policy = load_policy(tmp_path)
    index = ListIndex(policy.lists.values(), policy.source_dir)
    assert sorted(index.numbers) == [13900000005, 13900000006, 13900000007]
    with open_number_file(tmp_path / "bl.txt") as f:
        assert list(iter_numbers(f, [])) == ["13900000005", "13900000006", "13900000007"]
