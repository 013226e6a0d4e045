from dataclasses import replace
from datetime import datetime, time, timezone

import pytest

from policy.facts.builder import FactBuilder
from policy.facts.filelist import FileBlacklist
from policy.rules.model import TimeWindow
from policy.vocabulary import FACTS, engine_key

from policy.rules.model import Platform

from .conftest import (BEIJING_CMCC, BEIJING_CTCC, GUANGZHOU_CMCC, NOON, SHENZHEN_CUCC, TZ,
                       make_policy, submission)

MESSAGE_KEYS = {engine_key(n) for n, f in FACTS.items() if f.stage == "message"}
RECIPIENT_KEYS = {engine_key(n) for n, f in FACTS.items() if f.stage == "recipient"}
CHANNEL_KEYS = {engine_key(n) for n in FACTS if n.startswith("channel.")}
TYPES = {"bool": bool, "int": int, "str": str, "list": list}


def _public(facts):
    return {k for k in facts if not k.startswith("_")}


def _check_types(facts):
    for name, fact in FACTS.items():
        key = engine_key(name)
        if key in facts:
            value = facts[key]
            assert type(value) is TYPES[fact.type], (name, value)
            if fact.type == "list":
                assert all(type(v) is str for v in value), name


@pytest.fixture
def acct(policy):
    return policy.accounts["900001"]


@pytest.fixture
def mf(builder, acct):
    return builder.message_facts(submission(), acct, NOON)


def test_message_facts_are_exactly_the_vocabulary(mf):
    assert _public(mf) == MESSAGE_KEYS
    assert mf["_m"] == 1
    _check_types(mf)


def test_recipient_facts_are_exactly_the_vocabulary(builder, mf, acct):
    routed = builder.recipient_facts(mf, BEIJING_CMCC, acct)
    assert _public(routed) == MESSAGE_KEYS | RECIPIENT_KEYS
    _check_types(routed)
    unrouted = builder.recipient_facts(mf, "abc", acct)
    assert _public(unrouted) == MESSAGE_KEYS | (RECIPIENT_KEYS - CHANNEL_KEYS)
    _check_types(unrouted)


def test_recipient_facts_is_a_new_dict(builder, mf, acct):
    before = dict(mf)
    rf = builder.recipient_facts(mf, BEIJING_CMCC, acct)
    assert rf is not mf and mf == before


@pytest.mark.parametrize("number", [BEIJING_CMCC, GUANGZHOU_CMCC, "abc"])
def test_recipient_part_is_the_recipient_share_of_recipient_facts(builder, mf, acct, number):
    part = builder.recipient_part(mf, number, acct)
    full = builder.recipient_facts(mf, number, acct)
    assert set(part) <= RECIPIENT_KEYS
    # what the decision log keeps per recipient, same keys in the same order
    assert list(part.items()) == [(k, v) for k, v in full.items() if k in RECIPIENT_KEYS]
    assert builder.recipient_part(mf, number, acct) is not part


def test_message_facts(mf):
    assert mf[engine_key("account.id")] == "900001"
    assert mf[engine_key("message.content")] == "【云片科技】您的验证码是1234，5分钟内有效"
    assert mf[engine_key("message.length")] == 23
    assert mf[engine_key("message.segments")] == 1
    assert mf[engine_key("message.signature")] == "【云片科技】"
    assert mf[engine_key("message.signature_registered")] is True
    assert mf[engine_key("message.fee_code")] == "10"
    assert mf[engine_key("message.fee_code_allowed")] is True
    assert mf[engine_key("message.template_id")] == "tpl-code"
    assert mf[engine_key("message.template_matched")] is True
    assert mf[engine_key("message.keyword_groups")] == []
    assert mf[engine_key("message.hour")] == 12
    assert mf[engine_key("message.in_send_window")] is True
    assert mf[engine_key("message.src_id_valid")] is True
    assert mf[engine_key("message.src_id_extended")] is False
    assert mf[engine_key("message.parts")] == 1


def _mf(builder, acct, **kw):
    now = kw.pop("now", NOON)
    return builder.message_facts(submission(**kw), acct, now)


def test_signature_registration(builder, acct):
    k = engine_key("message.signature_registered")
    assert _mf(builder, acct, text="您好【小云】")[k] is True     # registered with brackets
    assert _mf(builder, acct, text="【别人家】您好")[k] is False
    none = _mf(builder, acct, text="您好")
    assert none[k] is False and none[engine_key("message.has_signature")] is False


def test_keywords_and_template(builder, acct):
    f = _mf(builder, acct, text="【云片科技】百家乐 加 vx 送彩金")
    assert f[engine_key("message.keyword_groups")] == ["contact", "gambling"]
    assert f[engine_key("message.template_matched")] is False
    assert f[engine_key("message.template_id")] == ""
    own = _mf(builder, acct, text="尊敬的张三，您的订单A123已发货【云片科技】")
    assert own[engine_key("message.template_id")] == "tpl-own"
    other = _mf(builder, acct, text="您的快递123已到")       # filed for another account only
    assert other[engine_key("message.template_matched")] is False


def test_format_fee_and_src(builder, acct):
    f = _mf(builder, acct, msg_fmt=4, fee_code="000030", src_id="1069000188")
    assert f[engine_key("message.msg_fmt")] == 4
    assert f[engine_key("message.msg_fmt_allowed")] is False
    assert f[engine_key("message.fee_code")] == "30"
    assert f[engine_key("message.fee_code_allowed")] is False
    assert f[engine_key("message.src_id_extended")] is True
    g = _mf(builder, acct, fee_code="20", src_id="10680001")
    assert g[engine_key("message.fee_code_allowed")] is True      # account lists it as "000020"
    assert g[engine_key("message.src_id_valid")] is False
    assert g[engine_key("message.src_id_extended")] is False


def test_length_limits_and_empty(builder, acct, policy):
    long = _mf(builder, acct, text="好" * 1001)
    assert long[engine_key("message.length")] == 1001
    assert long[engine_key("message.segments")] == 15
    assert long[engine_key("message.over_platform_max")] is True
    empty = _mf(builder, acct, text="")
    assert empty[engine_key("message.empty")] is True
    assert empty[engine_key("message.length")] == 0


def test_destinations(builder, acct):
    f = _mf(builder, acct, destinations=["+8613800138000", "0086 139 0000 0001"])
    assert f[engine_key("message.dest_count")] == 2
    assert f[engine_key("message.dest_malformed")] is False
    bad = _mf(builder, acct, destinations=["13800138000", "1380013800x"])
    assert bad[engine_key("message.dest_malformed")] is True


@pytest.mark.parametrize("raw, digits", [("+86138001380", "138001380"), ("+86 1380013800", "1380013800")])
def test_plus86_then_the_wrong_number_of_digits_is_judged_per_recipient(builder, acct, raw, digits):
    # docs/codes.md: digits of the wrong length are MA:0021 for that recipient, not 12 for the submit
    f = _mf(builder, acct, destinations=[BEIJING_CMCC, raw])
    assert f[engine_key("message.dest_malformed")] is False
    r = builder.recipient_facts(f, raw, acct)
    assert r[engine_key("recipient.number")] == digits
    assert r[engine_key("recipient.length_ok")] is False


def test_more_destinations_than_the_platform_allows(segment_db, api_blacklist):
    policy = make_policy(platform=Platform(max_destinations=2))
    builder = FactBuilder(policy, segment_db, api_blacklist, None)
    acct = policy.accounts["900001"]
    key = engine_key("message.dest_over_max")
    assert _mf(builder, acct, destinations=[BEIJING_CMCC] * 2)[key] is False
    assert _mf(builder, acct, destinations=[BEIJING_CMCC] * 3)[key] is True
    default = FactBuilder(make_policy(), segment_db, api_blacklist, None)
    assert _mf(default, acct, destinations=[BEIJING_CMCC] * 100)[key] is False
    assert _mf(default, acct, destinations=[BEIJING_CMCC] * 101)[key] is True


@pytest.mark.parametrize("now, hour, inside", [
    (datetime(2024, 5, 1, 7, 59, tzinfo=TZ), 7, False),
    (datetime(2024, 5, 1, 8, 0, tzinfo=TZ), 8, True),
    (datetime(2024, 5, 1, 21, 29, tzinfo=TZ), 21, True),
    (datetime(2024, 5, 1, 21, 30, tzinfo=TZ), 21, False),
    (datetime(2024, 5, 1, 4, 0, tzinfo=timezone.utc), 12, True),   # converted to Asia/Shanghai
    (datetime(2024, 5, 1, 14, 0, tzinfo=timezone.utc), 22, False),
])
def test_send_window_and_hour_follow_the_platform_clock(builder, acct, now, hour, inside):
    f = _mf(builder, acct, now=now)
    assert f[engine_key("message.hour")] == hour
    assert f[engine_key("message.in_send_window")] is inside


def test_window_across_midnight_and_no_window(builder, acct, policy):
    night = replace(acct, send_window=TimeWindow(time(22), time(6)))
    assert builder.message_facts(submission(), night, datetime(2024, 5, 1, 23, tzinfo=TZ))[
        engine_key("message.in_send_window")] is True
    other = policy.accounts["900002"]
    assert builder.message_facts(submission(), other, datetime(2024, 5, 1, 3, tzinfo=TZ))[
        engine_key("message.in_send_window")] is True


def test_naive_now_is_refused(builder, acct):
    with pytest.raises(ValueError, match="timezone-aware"):
        builder.message_facts(submission(), acct, datetime(2024, 5, 1, 12))


def _rf(builder, mf, acct, number):
    return builder.recipient_facts(mf, number, acct)


def test_recipient_lookup_and_route(builder, mf, acct):
    f = _rf(builder, mf, acct, "+8613800138000")
    assert f[engine_key("recipient.number")] == BEIJING_CMCC
    assert f[engine_key("recipient.segment")] == "1380013"
    assert (f[engine_key("recipient.province")], f[engine_key("recipient.city")]) == ("北京", "北京")
    assert f[engine_key("recipient.carrier")] == "cmcc"
    assert f[engine_key("recipient.valid")] is True
    assert f[engine_key("route.channel")] == "ch-cmcc-bj"           # region "北京市" serves 北京
    g = _rf(builder, mf, acct, GUANGZHOU_CMCC)
    assert g[engine_key("route.channel")] == "ch-cmcc"               # the next cmcc channel
    assert g[engine_key("channel.run_mode")] == "reject"


def test_channel_facts(builder, acct):
    mf = _mf(builder, acct, msg_fmt=15, text="好" * 301)
    g = _rf(builder, mf, acct, GUANGZHOU_CMCC)                        # ch-cmcc: formats (8,), max 300
    assert g[engine_key("channel.supports_format")] is False
    assert g[engine_key("channel.over_max_length")] is True
    assert g[engine_key("channel.supports_long")] is True
    s = _rf(builder, mf, acct, SHENZHEN_CUCC)
    assert s[engine_key("channel.supports_long")] is False


def test_no_route(builder, mf, policy):
    other = policy.accounts["900002"]                                 # only ch-cmcc
    f = builder.recipient_facts(mf, BEIJING_CTCC, other)
    assert f[engine_key("route.found")] is False and f[engine_key("route.channel")] == ""
    assert not CHANNEL_KEYS & set(f)
    assert f[engine_key("recipient.blacklisted.channel")] is False


def test_blacklists_by_scope(builder, mf, acct, policy):
    g = _rf(builder, mf, acct, BEIJING_CMCC)
    assert g[engine_key("recipient.blacklisted.global")] is True
    assert g[engine_key("recipient.lists")] == ["complaints", "global-bl"]
    c = _rf(builder, mf, acct, "13900000001")
    assert c[engine_key("recipient.blacklisted.customer")] is True
    assert c[engine_key("recipient.blacklisted.global")] is False
    assert c[engine_key("recipient.lists")] == ["cust-bl"]
    other = builder.recipient_facts(mf, "13900000001", policy.accounts["900002"])
    assert other[engine_key("recipient.blacklisted.customer")] is False
    ch = _rf(builder, mf, acct, GUANGZHOU_CMCC)                       # routed to ch-cmcc, on its list
    assert ch[engine_key("recipient.blacklisted.channel")] is True
    seg = _rf(builder, mf, acct, SHENZHEN_CUCC)                       # routed to ch-cucc, its segment
    assert seg[engine_key("recipient.segment_blacklisted.channel")] is True
    assert seg[engine_key("recipient.region_blocked")] is True        # "广东省/深圳市"
    gs = _rf(builder, mf, acct, BEIJING_CTCC)
    assert gs[engine_key("recipient.segment_blacklisted.global")] is True
    assert gs[engine_key("recipient.lists")] == ["global-seg"]


def test_channel_list_only_counts_for_the_routed_channel(builder, mf, policy):
    # the number is on ch-cmcc's list; an account routing it to another channel is not hit
    acct = replace(policy.accounts["900002"], channels=("ch-cmcc-backup", "ch-cmcc"))
    f = builder.recipient_facts(mf, GUANGZHOU_CMCC, acct)
    assert f[engine_key("route.channel")] == "ch-cmcc-backup"
    assert f[engine_key("recipient.blacklisted.channel")] is False
    assert f[engine_key("recipient.lists")] == ["chan-bl"]


def test_region_blocked_by_province(builder, mf, acct):
    f = _rf(builder, mf, acct, "13900000001")                         # 新疆/乌鲁木齐
    assert f[engine_key("recipient.region_blocked")] is True
    assert _rf(builder, mf, acct, GUANGZHOU_CMCC)[engine_key("recipient.region_blocked")] is False


def test_api_blacklist_is_seeded_and_live(builder, mf, acct, api_blacklist):
    assert _rf(builder, mf, acct, "13700000007")[engine_key("recipient.blacklisted.api")] is True
    api_blacklist.add(["13600000000"])
    assert _rf(builder, mf, acct, "13600000000")[engine_key("recipient.blacklisted.api")] is True
    api_blacklist.remove(["13700000007"])
    assert _rf(builder, mf, acct, "13700000007")[engine_key("recipient.blacklisted.api")] is False


def test_file_blacklist(policy, segment_db, api_blacklist, tmp_path, acct):
    (tmp_path / "f.txt").write_text("13800138000\n")
    fbl = FileBlacklist(tmp_path, 60)
    try:
        b = FactBuilder(policy, segment_db, api_blacklist, fbl)
        mf = b.message_facts(submission(), acct, NOON)
        assert b.recipient_facts(mf, "+8613800138000", acct)[engine_key("recipient.blacklisted.file")] is True
        assert b.recipient_facts(mf, GUANGZHOU_CMCC, acct)[engine_key("recipient.blacklisted.file")] is False
    finally:
        fbl.stop()


@pytest.mark.parametrize("raw, length_ok, valid, assigned, carrier", [
    ("1380013800", False, False, True, "cmcc"),        # 10 digits: its segment is still known
    ("19000001234", True, True, False, "ctcc"),        # valid, not in phone.dat: MA:0014
    ("12345678901", True, False, False, "unknown"),
    ("abc", False, False, False, "unknown"),
])
def test_odd_numbers(builder, mf, acct, raw, length_ok, valid, assigned, carrier):
    f = _rf(builder, mf, acct, raw)
    assert f[engine_key("recipient.length_ok")] is length_ok
    assert f[engine_key("recipient.valid")] is valid
    assert f[engine_key("recipient.segment_assigned")] is assigned
    assert f[engine_key("recipient.carrier")] == carrier


def test_an_account_object_other_than_the_policys(builder, acct):
    changed = replace(acct, msg_formats=(4,), fee_codes=())
    f = builder.message_facts(submission(msg_fmt=4, fee_code="999"), changed, NOON)
    assert f[engine_key("message.msg_fmt_allowed")] is True
    assert f[engine_key("message.fee_code_allowed")] is True


SAME_SEGMENT = [  # numbers of one segment with and without their own list entries, and odd forms
    BEIJING_CMCC, "13800138001", "+8613800138002", GUANGZHOU_CMCC, "13802400001", SHENZHEN_CUCC,
    "13005400001", BEIJING_CTCC, "13301000001", "13900000001", "13900000002", "13700000007",
    "13700000008", "17012345678", "1380013800", "abc", "", "99999999999", "10010"]


def test_the_segment_cache_gives_what_a_fresh_builder_gives(policy, segment_db, api_blacklist, mf):
    warm = FactBuilder(policy, segment_db, api_blacklist, None)
    for acct in policy.accounts.values():
        for _ in range(2):   # the second round answers every 11-digit number from the cache
            for number in SAME_SEGMENT:
                fresh = FactBuilder(policy, segment_db, api_blacklist, None)
                got, want = warm.recipient_part(mf, number, acct), fresh.recipient_part(mf, number, acct)
                assert list(got.items()) == list(want.items()), number   # the log keeps the order
        assert warm._accounts[acct.id].segment_cache   # the cache was used
