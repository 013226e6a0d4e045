"""Decision metrics count every recipient and submit refusal under its labels."""
from policy.daemon.decision import ACCEPT, HOLD, REJECT, Decision, RecipientResult
from policy.daemon.metrics import Metrics


def _decision(*recipients, submit=0, submit_rule=""):
    d = Decision(decision_id="d", request_id="r", rules_version="v", submit_result=submit,
                 submit_rule_id=submit_rule)
    d.recipients = list(recipients)
    return d


def test_counts_by_action_code_and_rule_across_decisions():
    m = Metrics()
    ok = RecipientResult("1", "1", ACCEPT, channel_id="ch")
    bl = RecipientResult("2", "2", REJECT, "MA:0001", "global-blacklist")
    held = RecipientResult("3", "3", HOLD, "", "audit-all")
    for _ in range(3):
        m.observe(_decision(ok, bl), 0.001)
    m.observe(_decision(held), 0.002)
    m.observe(_decision(submit=17, submit_rule="signature-unregistered"), 0.0005)
    value = m.registry.get_sample_value
    assert value("smspolicy_decisions_total", {"action": "accept", "code": "", "rule": ""}) == 3
    assert value("smspolicy_decisions_total",
                 {"action": "reject", "code": "MA:0001", "rule": "global-blacklist"}) == 3
    assert value("smspolicy_decisions_total", {"action": "hold", "code": "", "rule": "audit-all"}) == 1
    assert value("smspolicy_submit_refusals_total",
                 {"code": "17", "rule": "signature-unregistered"}) == 1
    assert value("smspolicy_evaluation_seconds_count") == 5
    assert m.decisions == 5
