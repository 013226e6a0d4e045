"""Between protobuf messages and the daemon's plain data; request validation lives here."""
from __future__ import annotations

import json

from ..api.v1 import policy_pb2 as pb
from ..submission import Submission
from .decision import ACCEPT, HOLD, REJECT, Decision

MAX_DESTINATIONS_ON_WIRE = 1000   # beyond this a request is garbage, not a policy question (102)
MAX_ACCOUNT_ID = 64
MAX_CONTENT_BYTES = 64 * 1024     # a reassembled 1000-character UCS2 message is 2,000 bytes
_ACTIONS = {ACCEPT: pb.ACTION_ACCEPT, REJECT: pb.ACTION_REJECT, HOLD: pb.ACTION_HOLD}
_MODES = {"enforce": pb.RULE_MODE_ENFORCE, "shadow": pb.RULE_MODE_SHADOW}
_ACCESS = {pb.ACCESS_MODE_CMPP: "cmpp", pb.ACCESS_MODE_HTTP: "http",
           pb.ACCESS_MODE_UNSPECIFIED: "cmpp"}


class InvalidRequest(ValueError):
    """A request the daemon will not evaluate; the message names the field."""


def submission_from_request(req: pb.EvaluateRequest) -> Submission:
    # each field read once: a protobuf attribute read costs as much as a small dict build
    request_id, account_id = req.request_id, req.account_id
    if not request_id:
        raise InvalidRequest("request_id: required")
    if len(request_id) > 128:
        raise InvalidRequest("request_id: longer than 128 characters")
    if not account_id:
        raise InvalidRequest("account_id: required")
    if len(account_id) > MAX_ACCOUNT_ID:   # (CMPP's is 6 characters; errors echo it back)
        raise InvalidRequest(f"account_id: longer than {MAX_ACCOUNT_ID} characters")
    destinations = list(req.destinations)
    if len(destinations) > MAX_DESTINATIONS_ON_WIRE:
        raise InvalidRequest(f"destinations: more than {MAX_DESTINATIONS_ON_WIRE} entries")
    if destinations and max(map(len, destinations)) > 32:
        i = next(i for i, d in enumerate(destinations) if len(d) > 32)
        raise InvalidRequest(f"destinations[{i}]: longer than 32 characters")
    content = req.content
    if len(content) > MAX_CONTENT_BYTES:
        raise InvalidRequest(f"content: longer than {MAX_CONTENT_BYTES} bytes")
    msg_fmt, parts = req.msg_fmt, req.parts
    if msg_fmt > 255:
        raise InvalidRequest("msg_fmt: must be 0..255")
    if parts > 255:
        raise InvalidRequest("parts: must be 0..255")
    message_ids = list(req.message_ids)
    if message_ids and len(message_ids) != len(destinations):
        raise InvalidRequest("message_ids: must be empty or one per destination")
    access_mode = _ACCESS.get(req.access_mode)
    if access_mode is None:
        raise InvalidRequest(f"access_mode: unknown value {req.access_mode}")
    return Submission(
        request_id=request_id, account_id=account_id, frontend_id=req.frontend_id,
        access_mode=access_mode, src_id=req.src_id, destinations=destinations, content=content,
        msg_fmt=msg_fmt, fee_code=req.fee_code, fee_type=req.fee_type, service_id=req.service_id,
        registered_delivery=req.registered_delivery, parts=parts, message_ids=message_ids)


def decision_to_response(d: Decision, explain: bool = False) -> pb.EvaluateResponse:
    resp = pb.EvaluateResponse(
        decision_id=d.decision_id, rules_version=d.rules_version, request_id=d.request_id,
        submit_result=d.submit_result, submit_rule_id=d.submit_rule_id,
        submit_reason=d.submit_reason, segments=d.segments, balance_after=d.balance_after,
        replayed=d.replayed)
    for r in d.recipients:
        resp.recipients.add(destination=r.destination, normalized=r.normalized,
                            action=_ACTIONS[r.action], code=r.code, rule_id=r.rule_id,
                            channel_id=r.channel_id, segments=r.segments, message_id=r.message_id,
                            shadow_rule_ids=r.shadow_rule_ids, reason=r.reason)
    for m in d.matches:
        resp.matches.add(rule_id=m.rule_id, code=m.code, priority=m.priority, mode=_MODES[m.mode],
                         recipient_index=m.recipient_index, description=m.description)
    for key, value, limit, limit_id in d.counters:
        resp.counters.add(key=key, value=value, limit=limit, limit_id=limit_id)
    if explain:
        resp.explanation.facts_json = json.dumps(d.facts, ensure_ascii=False, sort_keys=True)
        for rule_id, index, matched, mode, code, priority in d.trace:
            resp.explanation.rules.add(rule_id=rule_id, recipient_index=index, matched=matched,
                                       mode=_MODES[mode], code=code, priority=priority)
    return resp
