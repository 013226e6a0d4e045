"""The rules/ folder that ships with the project: valid, and holding what the product promises."""
from pathlib import Path

import pytest

from policy.cli import main
from policy.rules.conditions import facts_used
from policy.rules.loader import load_policy, policy_files

RULES = Path(__file__).resolve().parents[2] / "rules"

RECIPIENT_CODES_WITH_RULES = {
    "MA:0001", "MA:0002", "MA:0003", "MA:0005", "MA:0014", "MA:0021", "MA:0023", "MA:0024", "MA:0025",
    "MA:0027", "MA:0028", "MA:0029", "MA:0030", "MA:0033", "MA:0034", "MA:0036", "MA:0037", "MA:0039",
}
SUBMIT_CODES_WITH_RULES = {"4", "5", "9", "10", "12", "16", "17", "18", "19", "20", "102"}


@pytest.fixture(scope="module")
def policy():
    return load_policy(RULES)


def test_smspolicy_check_passes_on_the_shipped_folder(capsys):
    assert main(["check", str(RULES)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and out.rstrip().endswith(load_policy(RULES).version)


def test_the_files_are_split_by_subject():
    names = set(policy_files(RULES))
    assert {"platform.yaml", "accounts.yaml", "channels.yaml", "lists.yaml", "keywords.yaml",
            "templates.yaml", "policy.yaml", "limits.yaml"} <= names
    assert any(n.startswith("lists/") and n.endswith(".txt") for n in names)
    assert not any(n.startswith("blacklist-files/") for n in names)
    assert list((RULES / "blacklist-files").iterdir())


def test_demo_account(policy):
    a = policy.accounts["900001"]
    assert (a.secret, a.bound_ips, a.access_mode, a.cmpp_versions, a.msg_formats) == \
        ("888888", ("127.0.0.1/32",), "cmpp", (0x20, 0x21), (8,))
    assert a.signature_check and a.signatures == ("云信科技",)
    assert (a.access_code, a.allow_extension, a.billing) == ("106900001", True, "postpaid")
    assert (a.content_filing, a.audit_mode, a.status) == ("off", "none", "active")
    carriers = {c for ch in a.channels for c in policy.channels[ch].carriers}
    assert carriers == {"cmcc", "cucc", "ctcc", "cbn"}


def test_accounts_show_every_setting(policy):
    accounts = policy.accounts.values()

    def some(pred):
        return [a.id for a in accounts if pred(a)]

    assert some(lambda a: a.billing == "prepaid" and 0 < a.balance <= 1000)
    assert some(lambda a: a.status == "disabled")
    assert some(lambda a: a.access_mode == "http" and a.push_url)
    assert some(lambda a: a.channel_mode == "direct")
    assert some(lambda a: a.one_customer_one_signature and not a.allow_extension)
    filing = some(lambda a: a.content_filing == "reject")
    assert filing and any(t.account in filing for t in policy.templates.values())
    assert some(lambda a: a.audit_mode == "manual")
    assert some(lambda a: a.audit_mode == "reject")
    assert some(lambda a: "北京" in a.blocked_regions)
    assert some(lambda a: 0x30 in a.cmpp_versions)
    assert some(lambda a: a.login_window is not None)
    assert some(lambda a: a.send_window is not None)
    assert some(lambda a: a.intercept_mode == "pass")
    assert some(lambda a: a.fee_codes)


def test_channels_show_every_setting(policy):
    channels = policy.channels.values()
    for carrier in ("cmcc", "cucc", "ctcc"):
        assert any(c.carriers[0] == carrier and c.protocol == "cmpp" and (c.host, c.port) == ("127.0.0.1", 7891)
                   for c in channels)
    assert any(c.run_mode == "reject" for c in channels)
    assert any(not c.supports_long for c in channels)
    assert any(c.protocol == "http" and c.http_url for c in channels)
    assert any(c.max_length == 300 for c in channels)
    assert any(15 not in c.formats and 0 not in c.formats for c in channels)
    routed = {ch for a in policy.accounts.values() for ch in a.channels}
    assert routed == set(policy.channels), "every shipped channel is used by some account"


def test_lists(policy):
    scopes = {(lst.scope, lst.kind) for lst in policy.lists.values()}
    assert {("global", "numbers"), ("global", "segments"), ("customer", "numbers"), ("channel", "numbers"),
            ("channel", "segments"), ("api", "numbers")} <= scopes
    assert any(lst.scope == "customer" and lst.account == "900001" for lst in policy.lists.values())
    assert any(lst.files for lst in policy.lists.values())
    assert policy.file_blacklist is not None and Path(policy.file_blacklist.folder).is_dir()


def test_one_rule_per_decidable_code(policy):
    enforced = [r for r in policy.rules if r.mode == "enforce"]
    assert {r.code for r in enforced if r.stage == "recipient"} >= RECIPIENT_CODES_WITH_RULES
    assert {r.code for r in enforced if r.stage == "submit"} == SUBMIT_CODES_WITH_RULES
    assert any(r.code is None and r.action == "reject" for r in enforced)  # MA:0009 with a purpose
    [hold] = [r for r in policy.rules if r.action == "hold"]
    assert facts_used(hold.when) == {"account.audit_mode"}
    assert any(r.mode == "shadow" for r in policy.rules)
    assert all(r.description for r in policy.rules)


def test_priorities_give_one_clear_order(policy):
    for stage in ("submit", "recipient"):
        priorities = [r.priority for r in policy.rules if r.stage == stage]
        assert len(priorities) == len(set(priorities)), f"{stage} rules share a priority"
        assert priorities == sorted(priorities, reverse=True), "the file lists rules highest first"
    by_id = {r.id: r for r in policy.rules}
    # the number-format split: length, then validity, then segment
    assert by_id["number-length"].priority > by_id["number-invalid"].priority > \
        by_id["number-segment-unassigned"].priority > by_id["global-blacklist"].priority
    assert by_id["audit-hold"].priority == min(r.priority for r in policy.rules if r.stage == "recipient")


def test_demo_limits_are_small_enough_to_reach(policy):
    demo = {lim.scope: lim for lim in policy.limits if lim.accounts == ("900001",)}
    assert demo["account_number"].max <= 20 and demo["account_number_content"].max <= 5
    defaults = {lim.scope for lim in policy.limits if not lim.accounts}
    assert {"account", "channel", "channel_number", "channel_content"} <= defaults


@pytest.mark.parametrize("count, result", [(2, 0), (3, 102)])
def test_platform_max_destinations_gives_102_beyond_it(tmp_path, capsys, count, result):
    import json
    import shutil
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder, ignore=shutil.ignore_patterns("tests"))
    platform = folder / "platform.yaml"
    text = platform.read_text(encoding="utf-8")
    assert "max_destinations: 100 " in text
    platform.write_text(text.replace("max_destinations: 100 ", "max_destinations: 2   "), encoding="utf-8")
    args = ["explain", "--json", "--rules", str(folder), "--account", "900001", "--text", "【云信科技】你好"]
    for i in range(count):
        args += ["--to", f"1380013800{i}"]
    assert main(args) == 0
    decision = json.loads(capsys.readouterr().out)["decision"]
    assert decision["submit_result"] == result
    if result:
        assert decision["submit_rule_id"] == "submit-recipient-count"
