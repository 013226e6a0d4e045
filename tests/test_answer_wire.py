"""The daemon sends EvaluateResponse bytes kept by the counter step as they are, and builds
EvaluateBatchResponse from them by hand: both must parse as what decision_to_response says."""
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.api.v1 import policy_pb2 as pb
from policy.daemon.convert import decision_to_response
from policy.daemon.decision import ACCEPT, REJECT, Decision, RecipientResult
from policy.daemon.service import answer_bytes, batch_bytes


def _decision(n: int, reason: str) -> Decision:
    d = Decision(decision_id="d" * 32, request_id=f"r{n}", rules_version="v1", segments=2)
    for i in range(n):
        d.recipients.append(RecipientResult(f"1380013{i:04d}", f"1380013{i:04d}",
                                            REJECT if i % 2 else ACCEPT, "MA:0001" if i % 2 else "",
                                            reason=reason))
    return d


def test_stored_answer_goes_out_as_kept_and_a_replay_says_so():
    d = _decision(3, "blacklisted")
    d.stored_response = decision_to_response(d).SerializeToString()
    assert answer_bytes(d) == d.stored_response
    replay = Decision(decision_id="", request_id="r3", rules_version="", replayed=True,
                      stored_response=d.stored_response)
    got = pb.EvaluateResponse.FromString(answer_bytes(replay))
    want = decision_to_response(d)
    want.replayed = True
    assert got == want


def test_explain_is_built_not_taken_from_the_kept_answer():
    d = _decision(1, "")
    d.stored_response = decision_to_response(d).SerializeToString()
    d.facts = {"message": {"message__length": 3}, "recipients": []}
    got = pb.EvaluateResponse.FromString(answer_bytes(d, explain=True))
    assert '"message__length": 3' in got.explanation.facts_json


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 120), st.text(max_size=300)), max_size=6))
def test_batch_bytes_parse_as_the_batch(specs):
    # lengths across the 1-, 2- and 3-byte varint boundaries (127, 16383)
    decisions = [_decision(n, reason) for n, reason in specs]
    answers = [decision_to_response(d).SerializeToString() for d in decisions]
    got = pb.EvaluateBatchResponse.FromString(batch_bytes(answers))
    assert list(got.responses) == [decision_to_response(d) for d in decisions]
    assert batch_bytes(answers) == pb.EvaluateBatchResponse(
        responses=[decision_to_response(d) for d in decisions]).SerializeToString()
