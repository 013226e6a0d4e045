"""One HTTP POST of a batch of reports to a customer, and what its answer means.

Body (UTF-8 JSON):

    {"account": "900004",
     "reports": [{"id": 17, "msg_id": "1234567890123456789", "mobile": "13800138000",
                  "stat": "DELIVRD", "src_id": "106900004", "service_id": "",
                  "submit_time": "2026-11-26 12:00:00", "done_time": "2026-11-26 12:00:05"}]}

`msg_id` is the Msg_Id the customer got for that recipient (a string: it is 64-bit); `id`
tells reports of one message apart (a long SMS has one per part) and repeats when a push is
retried, so the customer can de-duplicate. The answer body, stripped of surrounding white
space, must equal the account's push_ok_body.
"""
from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from datetime import datetime
from typing import Sequence
from urllib.parse import urlsplit

from gateway.store import ReportRow

from .outcomes import BAD_ADDRESS, BAD_ANSWER, RECEIVED, TIMED_OUT

_MAX_ANSWER = 4096


def _time(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def batch_body(account_id: str, rows: Sequence[ReportRow]) -> bytes:
    return json.dumps({"account": account_id, "reports": [
        {"id": r.id, "msg_id": str(r.msg_id), "mobile": r.dest, "stat": r.stat,
         "src_id": r.src_id, "service_id": r.service_id, "submit_time": _time(r.submit_time),
         "done_time": _time(r.done_time)} for r in rows]}, ensure_ascii=False).encode("utf-8")


def usable_url(url: str | None) -> bool:
    if not url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def push(url: str | None, body: bytes, ok_body: str, timeout: float) -> tuple[int, str]:
    """(outcome, detail) for one POST; blocking."""
    if not usable_url(url):
        return BAD_ADDRESS, f"push URL missing or malformed: {url!r}"
    req = urllib.request.Request(url, body, {"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = resp.read(_MAX_ANSWER)
            status = resp.status
    except urllib.error.HTTPError as e:
        return BAD_ANSWER, f"HTTP {e.code}"
    except (socket.timeout, TimeoutError):
        return TIMED_OUT, f"no answer within {timeout:g} s"
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            return TIMED_OUT, f"no answer within {timeout:g} s"
        return BAD_ADDRESS, f"cannot reach {url}: {e.reason}"
    except (http.client.HTTPException, OSError, ValueError) as e:
        return BAD_ANSWER, f"broken answer: {e!r}"
    text = answer.decode("utf-8", errors="replace").strip()
    if text == ok_body.strip():
        return RECEIVED, f"HTTP {status} {text!r}"
    return BAD_ANSWER, f"HTTP {status}, answer {text[:80]!r} is not {ok_body!r}"
