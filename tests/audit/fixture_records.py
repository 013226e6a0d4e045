"""The records in fixtures/v1-decisions.db, a log written by the format /1 writer as it was
before format /2 existed (commit 6a4118a), kept to show that such files still verify, read and
continue. Regenerate only with that code: the point is that it is not the current writer's."""
from __future__ import annotations

BASE_TS = 1_714_521_600.0


def _message(account: str, content: str) -> dict:
    return {"_m": 1, "account__id": account, "account__status": "active", "message__length": len(content),
            "message__segments": 1, "message__signature": "【测试】", "message__keyword_groups": ["fraud"],
            "message__content": content, "message__hour": 8}


def _recipient(number: str, blacklisted: bool) -> dict:
    return {"recipient__number": number, "recipient__valid": True, "recipient__carrier": "cmcc",
            "recipient__province": "广东", "recipient__blacklisted__global": blacklisted,
            "recipient__lists": [], "route__channel": "ch-cmcc-a"}


def records() -> list[dict]:
    out = []
    for i in range(4):
        content = f"【测试】您的验证码是{100000 + i}，5分钟内有效。"
        dests = ["13800138000", "13900139000"][: 1 + i % 2]
        recipients = [_recipient(d, n == 0 and i == 1) for n, d in enumerate(dests)]
        if i == 3:
            recipients[0] = None   # a recipient whose evaluation failed (MA:0011, no facts)
        out.append({
            "decision_id": f"fx-{i:04d}",
            "ts": BASE_TS + i,
            "request_id": f"fx-req-{i}",
            "frontend_id": "gw-1",
            "account_id": "900001" if i % 2 else "900002",
            "src_id": "1069000123",
            "destinations": dests,
            "content": content,
            "msg_fmt": 8,
            "facts": {"message": _message("900001" if i % 2 else "900002", content), "recipients": recipients},
            "counters": [[f"a:account-daily-volume:90000{1 + i % 2}:day1:19844", i, 1000000, "account-daily-volume"]],
            "rules_version": "v-fixture",
            "matches": [{"rule_id": "global-blacklist", "code": "MA:0001", "priority": 900, "mode": "enforce",
                         "recipient_index": 0}] if i == 1 else [],
            "results": {"submit_result": 0, "submit_rule_id": "", "recipients": [
                {"destination": d, "action": "reject" if (i == 1 and n == 0) or (i == 3 and n == 0) else "accept",
                 "code": "MA:0001" if i == 1 and n == 0 else "MA:0011" if i == 3 and n == 0 else "",
                 "rule_id": "global-blacklist" if i == 1 and n == 0 else "", "channel_id": "ch-cmcc-a"}
                for n, d in enumerate(dests)], "balance": None, "errors": []},
        })
    return out
