"""Small builders for talking to a real daemon over gRPC in tests."""
from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.cmpp.auth import authenticator_source, timestamp_now
from policy.api.v1 import policy_pb2 as pb

SIGNATURE = "【云信科技】"
_ids = itertools.count(1)
_age = itertools.count()
TZ = ZoneInfo("Asia/Shanghai")


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


def fresh_ts() -> int:
    """A CONNECT timestamp within the allowed skew, different for every login of the session
    (a successful login's authenticator cannot be used twice)."""
    return timestamp_now(datetime.now(TZ) - timedelta(seconds=next(_age) % 240))


def login(daemon, account="900001", secret="888888", version=0x21, ip="127.0.0.1", ts=None,
          **kw) -> pb.LoginResponse:
    """PolicyService.Login as a CMPP front-end calls it (by default the demo account)."""
    ts = fresh_ts() if ts is None else ts
    auth = authenticator_source(account, secret, ts)
    return daemon.policy.Login(pb.LoginRequest(
        account_id=account, authenticator_source=auth, timestamp=ts, version=version, peer_ip=ip,
        access_mode=kw.pop("mode", pb.ACCESS_MODE_CMPP), frontend_id="tests", **kw), timeout=10)


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


def eventually(check, seconds: float = 5.0) -> bool:
    """True once check() is, polling for up to `seconds` (a change another daemon picks up
    within its refresh interval)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
