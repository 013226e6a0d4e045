"""Every policy code the daemon owns, triggered from the outside through gRPC, for its real reason.

One daemon process on the shipped rules/ serves the whole module; each test sends the input a
customer would send and asserts the code and the rule that decided it.
"""
from __future__ import annotations

import pytest

from policy.api.v1 import policy_pb2 as pb
from tests.e2e.grpc_helpers import SIGNATURE, one, request


def evaluate(daemon, **kw) -> pb.EvaluateResponse:
    return daemon.policy.Evaluate(request(**kw), timeout=10)


def test_a_clean_message_is_accepted_and_routed(daemon):
    resp = evaluate(daemon)
    d = one(resp)
    assert (d.action, d.code, d.channel_id) == (pb.ACTION_ACCEPT, "", "ch-cmcc")
    assert resp.rules_version and resp.decision_id and resp.segments == 1


def test_prefixes_are_stripped(daemon):
    for raw in ("8613800138001", "+8613800138002", "008613800138003"):
        assert one(evaluate(daemon, dests=[raw])).normalized == "1380013800" + raw[-1]


@pytest.mark.parametrize("kw,code,rule", [
    (dict(dests=["13900000001"]), "MA:0001", "global-blacklist"),           # inline entry
    (dict(dests=["13900000005"]), "MA:0001", "global-blacklist"),           # from lists/global-blacklist.txt
    (dict(text=f"{SIGNATURE}欢迎光临网上赌场，首充送礼"), "MA:0002", "illegal-content"),
    (dict(text=f"{SIGNATURE}博 ★ 彩天天开奖"), "MA:0002", "illegal-content"),  # split by symbols
    (dict(account="900015", src_id="106900015", dests=["13000000000"]), "MA:0003", "no-route"),
    (dict(dests=["12345678901"]), "MA:0005", "number-invalid"),
    (dict(dests=["19999999999"]), "MA:0014", "number-segment-unassigned"),
    (dict(dests=["1380013800"]), "MA:0021", "number-length"),
    (dict(dests=["13700000001"]), "MA:0023", "customer-blacklist"),
    (dict(dests=["13600000001"]), "MA:0027", "channel-blacklist"),
    (dict(dests=["13400001234"]), "MA:0028", "global-segment-blacklist"),
    (dict(dests=["13500001234"]), "MA:0029", "channel-segment-blacklist"),
    (dict(dests=["13800000404"]), "MA:0034", "file-blacklist"),
    (dict(text=f"{SIGNATURE}您的验证码是{{code}}"), "MA:0009", "unresolved-placeholder"),
])
def test_recipient_codes_of_the_demo_account(daemon, kw, code, rule):
    d = one(evaluate(daemon, **kw))
    assert (d.action, d.code, d.rule_id) == (pb.ACTION_REJECT, code, rule)


def _account_request(account: str, **kw):
    return dict(account=account, src_id=f"106{account}", **kw)


def test_unfiled_content_is_refused_for_a_filing_account(daemon):
    d = one(evaluate(daemon, **_account_request("900007", text=f"{SIGNATURE}周末大促，全场五折")))
    assert (d.code, d.rule_id) == ("MA:0024", "content-not-filed")


def test_filed_template_passes_for_a_filing_account(daemon):
    resp = daemon.policy.Evaluate(request(**_account_request("900007")), timeout=10)
    assert resp.submit_result == 0
    assert resp.recipients[0].code != "MA:0024"


def test_audit_reject_account(daemon):
    assert one(evaluate(daemon, **_account_request("900009"))).code == "MA:0030"


def test_manual_audit_account_is_held(daemon):
    d = one(evaluate(daemon, **_account_request("900008")))
    assert (d.action, d.rule_id, d.code) == (pb.ACTION_HOLD, "audit-hold", "")


def test_region_block(daemon):
    d = one(evaluate(daemon, **_account_request("900010", dests=["13800138000"])))  # 北京
    assert (d.code, d.rule_id) == ("MA:0033", "region-blocked")
    ok = one(evaluate(daemon, **_account_request("900010", dests=["13900001234"])))  # 新疆
    assert ok.action == pb.ACTION_ACCEPT


def test_channel_run_mode_reject(daemon):
    d = one(evaluate(daemon, **_account_request("900014", dests=["13800138000"])))  # CMCC -> ch-cmcc-maint
    assert (d.code, d.channel_id) == ("MA:0036", "ch-cmcc-maint")


def test_channel_max_length(daemon):
    long_text = SIGNATURE + "通知" * 160  # 326 characters: over ch-cucc-short's 300, under 1000
    d = one(evaluate(daemon, **_account_request("900014", dests=["13000000000"], text=long_text)))
    assert (d.code, d.channel_id, d.rule_id) == ("MA:0037", "ch-cucc-short", "content-too-long")


def test_channel_does_not_carry_the_format(daemon):
    d = one(evaluate(daemon, **_account_request("900014", dests=["13300000000"], msg_fmt=15)))
    assert (d.code, d.channel_id) == ("MA:0025", "ch-ctcc-ucs2")


def test_api_blacklist_takes_effect_at_once(daemon):
    assert one(evaluate(daemon, dests=["13912345678"])).action == pb.ACTION_ACCEPT
    daemon.admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(add=["13912345678"]), timeout=5)
    d = one(evaluate(daemon, dests=["13912345678"]))
    assert (d.code, d.rule_id) == ("MA:0039", "api-blacklist")
    daemon.admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(remove=["13912345678"]), timeout=5)
    assert one(evaluate(daemon, dests=["13912345678"])).action == pb.ACTION_ACCEPT


def test_group_send_decides_each_recipient(daemon):
    resp = evaluate(daemon, dests=["13800138011", "13900000001", "1380013800"])
    assert [(r.action, r.code) for r in resp.recipients] == [
        (pb.ACTION_ACCEPT, ""), (pb.ACTION_REJECT, "MA:0001"), (pb.ACTION_REJECT, "MA:0021")]


def test_shadow_rule_is_reported_never_enforced(daemon):
    resp = evaluate(daemon, text=f"{SIGNATURE}无抵押贷款，秒到账")
    d = one(resp)
    assert d.action == pb.ACTION_ACCEPT
    assert "trial-loan-ads" in d.shadow_rule_ids
    assert any(m.rule_id == "trial-loan-ads" and m.mode == pb.RULE_MODE_SHADOW for m in resp.matches)


def test_every_match_is_reported_and_the_highest_priority_decides(daemon):
    # on the global blacklist AND in the file blacklist's segment? use a blacklisted number with illegal content
    resp = evaluate(daemon, dests=["13900000001"], text=f"{SIGNATURE}网上赌场")
    ids = [m.rule_id for m in resp.matches]
    assert ids[:2] == ["global-blacklist", "illegal-content"]
    assert one(resp).rule_id == "global-blacklist"


# --- submit-level results (CMPP_SUBMIT_RESP.Result) ----------------------------------------------

@pytest.mark.parametrize("kw,result,rule", [
    (dict(text=SIGNATURE + "长" * 1001), 4, "submit-too-long"),
    (dict(account="900002", src_id="106900002", fee_code="99"), 5, "submit-fee-code"),
    (dict(msg_fmt=15), 9, "submit-msg-fmt"),
    (dict(src_id="10699999"), 10, "submit-src-id"),
    (dict(dests=["1380013800a"]), 12, "submit-destination-malformed"),
    (dict(text="【别家签名】您的验证码是1234"), 17, "submit-signature-not-registered"),
    (dict(text="您的验证码是1234"), 17, "submit-signature-not-registered"),
    (dict(account="900005", src_id="10690005", dests=["13800138000", "13800138001"]), 18, "submit-direct-mode-mass"),
    (dict(account="900006", src_id="106900006"), 19, "submit-one-signature-needs-extension"),
    (dict(content=b""), 20, "submit-empty"),
    (dict(dests=[]), 102, "submit-recipient-count"),
    (dict(dests=["13800138000"] * 101), 102, "submit-recipient-count"),
])
def test_submit_results(daemon, kw, result, rule):
    resp = evaluate(daemon, **kw)
    assert (resp.submit_result, resp.submit_rule_id) == (result, rule), resp
    assert not resp.recipients


def test_a_1000_character_message_is_not_code_4(daemon):
    resp = evaluate(daemon, text=SIGNATURE + "长" * (1000 - len(SIGNATURE)))
    assert resp.submit_result == 0


# --- bad requests: a clear answer naming the field, never a crash ----------------------------------

@pytest.mark.parametrize("field,kw", [
    ("request_id", dict(request_id="")),
    ("account_id", dict(account_id="")),
    ("account_id", dict(account_id="9" * 100_000)),   # echoed whole, it broke the error's metadata
    ("msg_fmt", dict(msg_fmt=300)),
    ("message_ids", dict(message_ids=["1", "2"])),
    ("destinations[0]", dict(destinations=["1" * 40])),
    ("destinations[2]", dict(destinations=["13800138000", "13900139000", "1" * 33])),
    ("destinations", dict(destinations=["13800138000"] * 1001)),
    ("content", dict(content=b"x" * (64 * 1024 + 1))),
    ("parts", dict(parts=256)),
    ("access_mode", dict(access_mode=7)),
])
def test_invalid_requests_name_the_field(daemon, field, kw):
    import grpc
    req = request()
    for k, v in kw.items():
        if isinstance(v, list):
            del getattr(req, k)[:]
            getattr(req, k).extend(v)
        else:
            setattr(req, k, v)
    with pytest.raises(grpc.RpcError) as e:
        daemon.policy.Evaluate(req, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(field + ":")
    assert one(evaluate(daemon)).action == pb.ACTION_ACCEPT  # and the daemon still serves


@pytest.mark.parametrize("explain", [False, True])
def test_an_invalid_request_in_a_batch_or_stream_is_named_by_its_index(daemon, explain):
    import grpc
    reqs = [request(dests=["13800138021"]) for _ in range(3)]
    reqs[2].account_id = ""
    for r in reqs:
        r.explain = explain
    with pytest.raises(grpc.RpcError) as e:
        daemon.policy.EvaluateBatch(pb.EvaluateBatchRequest(requests=reqs), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "requests[2].account_id: required"
    with pytest.raises(grpc.RpcError) as e:
        list(daemon.policy.EvaluateStream(iter(reqs), timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "requests[2].account_id: required"


@pytest.mark.parametrize("method", ["PolicyService/Evaluate", "PolicyService/EvaluateBatch",
                                    "PolicyService/EvaluateStream", "PolicyService/Login",
                                    "AdminService/GetBalance"])
def test_a_request_that_does_not_parse_is_invalid_argument(daemon, method):
    import grpc
    garbage = b"\x0a\x02\xff\xfe"   # field 1: a string that is not UTF-8 (batch: not a message)
    path = f"/smspolicy.v1.{method}"
    with pytest.raises(grpc.RpcError) as e:
        if method.endswith("Stream"):
            list(daemon.channel.stream_stream(path)(iter([garbage]), timeout=5))
        else:
            daemon.channel.unary_unary(path)(garbage, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "not a valid smspolicy.v1." in e.value.details()
    assert one(evaluate(daemon)).action == pb.ACTION_ACCEPT  # and the daemon still serves


def test_unknown_account_is_not_found(daemon):
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        daemon.policy.Evaluate(request(account="999999"), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_batch_and_stream_answer_in_order(daemon):
    reqs = [request(dests=[n]) for n in ("13800138021", "13900000001", "13700000001")]
    batch = daemon.policy.EvaluateBatch(pb.EvaluateBatchRequest(requests=reqs), timeout=10)
    assert [r.recipients[0].code for r in batch.responses] == ["", "MA:0001", "MA:0023"]
    reqs = [request(dests=[n]) for n in ("13800138021", "13900000001", "13700000001")]
    stream = list(daemon.policy.EvaluateStream(iter(reqs), timeout=10))
    assert [r.recipients[0].code for r in stream] == ["", "MA:0001", "MA:0023"]


def test_explain_returns_facts_and_every_rule(daemon):
    import json
    resp = daemon.policy.Evaluate(request(dests=["13900000001"], explain=True), timeout=10)
    facts = json.loads(resp.explanation.facts_json)
    assert facts["recipients"][0]["recipient__blacklisted__global"] is True
    traced = {(t.rule_id, t.matched) for t in resp.explanation.rules}
    assert ("global-blacklist", True) in traced and ("customer-blacklist", False) in traced
