"""Small builders for talking to a real daemon over gRPC in tests."""
from __future__ import annotations

import itertools
import time

from policy.api.v1 import policy_pb2 as pb

SIGNATURE = "【云信科技】"
_ids = itertools.count(1)


def ucs2(text: str) -> bytes:
    return text.encode("utf-16-be")


def fresh_number() -> str:
    """A different 北京 CMCC number each call, so limits on the shared daemon never interfere."""
    return f"1380013{next(_ids) % 10000:04d}"


def request(dests=None, text=None, account="900001", src_id="106900001", msg_fmt=8,
            content: bytes | None = None, **kw) -> pb.EvaluateRequest:
    """A message from the demo account; by default a filed-looking verification code, unique per
    call (content and number), so the demo account's small limits are not reached by accident."""
    if dests is None:
        dests = [fresh_number()]
    if text is None:
        text = f"{SIGNATURE}您的验证码是{next(_ids):06d}，5分钟内有效"
    if content is None:
        content = text.encode("gb18030") if msg_fmt == 15 else ucs2(text) if msg_fmt == 8 else text.encode("latin-1")
    return pb.EvaluateRequest(request_id=f"test-{next(_ids)}-{id(kw)}", account_id=account,
                              frontend_id="tests", access_mode=pb.ACCESS_MODE_CMPP, src_id=src_id,
                              destinations=list(dests), content=content, msg_fmt=msg_fmt,
                              registered_delivery=True, **kw)


def one(resp: pb.EvaluateResponse) -> pb.RecipientDecision:
    assert resp.submit_result == 0, resp
    assert len(resp.recipients) == 1, resp
    return resp.recipients[0]


def clear_of_the_hour(margin: float = 30.0) -> None:
    """Wait out the turn of a clock hour when it is less than `margin` seconds away: a test whose
    counts must carry across several calls cannot meet a fixed hourly window's reset in between
    (the shipped demo-same-content-hourly limit resets at every full hour)."""
    left = 3600 - time.time() % 3600
    if left < margin:
        time.sleep(left + 0.5)
