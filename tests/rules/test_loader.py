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
