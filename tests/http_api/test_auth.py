"""Authentication: every request is a login of the daemon's (access mode HTTP)."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.frontend.cmpp_client import CmppClient
from tests.http_api.support import (
    BOUND_ELSEWHERE, DISABLED, HTTP_ACCOUNT, HTTP_SECRET, ApiClient, start_api,
)
from tests.support.procs import free_port

MESSAGE = {"content": "【云信科技】hello", "mobiles": ["13912349999"]}


def test_a_cmpp_account_over_http_is_refused_with_6(stack):
    answer = stack.client("900001", "888888").call("POST", "/v1/sms/submit", MESSAGE)
    assert (answer.status, answer.doc["code"], answer.doc["stage"]) == (403, 6, "login")


def test_the_http_account_over_cmpp_is_refused_with_6_by_the_front_end(stack):
    async def connect():
        client = await CmppClient.open(stack.gateway_port)
        try:
            return await client.login(HTTP_ACCOUNT, HTTP_SECRET)
        finally:
            await client.close()
    assert asyncio.run(asyncio.wait_for(connect(), 10)).status == 6


@pytest.mark.parametrize("account,secret,status,code", [
    (HTTP_ACCOUNT, "wrong-secret", 401, 3),
    ("999999", "whatever", 401, 3),          # unknown account
    (*BOUND_ELSEWHERE, 403, 2),              # 127.0.0.1 is not in its bound_ips
    (*DISABLED, 403, 7),
])
def test_login_refusals_map_to_http_statuses(stack, account, secret, status, code):
    for method, target, doc in (("POST", "/v1/sms/submit", MESSAGE), ("GET", "/v1/balance", None)):
        answer = stack.client(account, secret).call(method, target, doc)
        assert (answer.status, answer.doc["code"], answer.doc["stage"]) == (status, code, "login")


def test_a_stale_signed_request_is_refused(stack, api):
    stale = int(time.time()) - 301                        # login_clock_skew is 300 s
    answer = api.call("POST", "/v1/sms/submit", MESSAGE, timestamp=stale)
    assert (answer.status, answer.doc["code"]) == (401, 3)
    assert "time stamp" in answer.doc["message"]
    future = int(time.time()) + 301
    assert api.call("GET", "/v1/balance", timestamp=future).doc["code"] == 3


def test_a_replayed_post_is_refused_within_the_window(stack, api):
    ts = int(time.time())
    first = api.call("POST", "/v1/reports/ack", {"ids": [999999999]}, timestamp=ts)
    again = api.call("POST", "/v1/reports/ack", {"ids": [999999999]}, timestamp=ts)
    assert (first.status, first.doc["code"]) == (200, 0)
    assert (again.status, again.doc["code"]) == (401, 3) and "already" in again.doc["message"]


def test_a_request_altered_after_signing_is_refused(stack, api):
    from gateway.http_api.signing import signed_headers
    body = b'{"content": "hello", "mobiles": ["13912349999"]}'
    headers = signed_headers(HTTP_ACCOUNT, HTTP_SECRET, "POST", "/v1/sms/submit", body)
    altered = body.replace(b"13912349999", b"13912348888")
    answer = api.call("POST", "/v1/sms/submit", body=altered, headers=headers, sign=False)
    assert (answer.status, answer.doc["code"]) == (401, 3)
    signed_for_other_path = signed_headers(HTTP_ACCOUNT, HTTP_SECRET, "GET", "/v1/balance")
    answer = api.call("GET", "/v1/reports", headers=signed_for_other_path, sign=False)
    assert (answer.status, answer.doc["code"]) == (401, 3)


@pytest.mark.parametrize("headers", [
    {},
    {"X-Account": HTTP_ACCOUNT, "X-Timestamp": "now", "X-Signature": "00" * 32},
    {"X-Account": HTTP_ACCOUNT, "X-Timestamp": "1700000000", "X-Signature": "not hex"},
    {"X-Account": HTTP_ACCOUNT, "X-Timestamp": "1700000000", "X-Signature": "abcd"},
])
def test_missing_or_malformed_authentication_headers_get_401(stack, api, headers):
    answer = api.call("GET", "/v1/balance", headers=headers, sign=False)
    assert (answer.status, answer.doc["code"], answer.doc["stage"]) == (401, 3, "login")


def test_without_a_daemon_requests_get_8_and_retry_after(stack, tmp_path):
    proc, port = start_api(tmp_path, f"127.0.0.1:{free_port()}", tmp_path / "var",
                           {"SMSPOLICY_POLICY_TIMEOUT": "0.5"})
    try:
        answer = ApiClient(f"http://127.0.0.1:{port}").call("POST", "/v1/sms/submit", MESSAGE)
        assert (answer.status, answer.doc["code"]) == (503, 8)
        assert answer.headers["Retry-After"] == "1"
    finally:
        proc.stop()
