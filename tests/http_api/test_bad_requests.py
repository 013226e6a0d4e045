"""Whatever a client sends: a 4xx with a JSON error body, never a 500, never a crash."""
from __future__ import annotations

import json

import pytest

from tests.http_api.support import exchange_raw, send


def _status_and_doc(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("body,message", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "expected a JSON object"),
    (b'"just a string"', "expected a JSON object"),
    (b"", "not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "deep nesting"),
    (b'{"content": "x", "mobiles": [1' + b"0" * 5000 + b"]}", "huge number"),
    (b'{"content": 5, "mobiles": ["13912340001"]}', "content"),
    (b'{"content": "x", "mobiles": "13912340001"}', "mobiles"),
    (b'{"content": "x", "mobiles": ["13912340001", 13912340002]}', "mobiles[1]"),
    (b'{"content": "x", "mobiles": ["13912340001"], "report": "yes"}', "report"),
    (b'{"content": "x", "mobiles": ["13912340001"], "extno": 88}', "extno"),
    (b'{"content": "\\ud800", "mobiles": ["13912340001"]}', "content"),
])
def test_bad_submit_bodies_get_400_code_1(api, body, message):
    answer = api.call("POST", "/v1/sms/submit", body=body)
    assert (answer.status, answer.doc["code"], answer.doc["stage"]) == (400, 1, "request")
    assert message in answer.doc["message"]


@pytest.mark.parametrize("target,doc", [
    ("/v1/reports/ack", {"ids": []}),
    ("/v1/reports/ack", {"ids": ["1"]}),
    ("/v1/reports/ack", {"ids": [True]}),
    ("/v1/reports/ack", {"ids": [2 ** 70]}),
    ("/v1/reports/ack", {"id": 1}),
])
def test_bad_acknowledgements_get_400(api, target, doc):
    answer = api.call("POST", target, doc)
    assert (answer.status, answer.doc["code"]) == (400, 1)


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=ten", "cursor=-1",
                                   "cursor=" + "9" * 30, "limit=1&limit=2", "a=%zz&&"])
def test_bad_pull_parameters_get_400(api, query):
    answer = api.call("GET", f"/v1/reports?{query}")
    assert (answer.status, answer.doc["code"]) == (400, 1), answer


def test_wrong_content_type_gets_415(api):
    answer = api.call("POST", "/v1/sms/submit", {"content": "x", "mobiles": ["13912340001"]},
                      content_type="text/plain")
    assert (answer.status, answer.doc["code"]) == (415, 1)
    ok = api.call("POST", "/v1/reports/ack", {"ids": [1]},
                  content_type="Application/JSON; charset=utf-8")
    assert ok.status == 200


def test_unknown_path_404_and_wrong_method_405(stack, api):
    assert api.call("GET", "/v1/sms/submits").status == 404
    assert api.call("GET", "/").status == 404
    answer = api.call("GET", "/v1/sms/submit")
    assert (answer.status, answer.doc["code"], answer.headers["Allow"]) == (405, 1, "POST")
    assert api.call("POST", "/v1/balance", {}).status == 405


def test_a_body_over_1_mb_is_refused_before_it_is_read(stack):
    answer = send(stack.base + "/v1/sms/submit", "POST", b" " * (1024 * 1024 + 1),
                  {"Content-Type": "application/json"})
    assert (answer.status, answer.doc["code"]) == (413, 1)


@pytest.mark.parametrize("raw,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /v1/balance HTTP/2.0\r\n\r\n", 400),
    (b"GET v1/balance HTTP/1.1\r\n\r\n", 400),
    (b"GET /v1/balance HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"POST /v1/sms/submit HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400),
    (b"POST /v1/sms/submit HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST /v1/sms/submit HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
    (b"GET /v1/balance HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
])
def test_malformed_http_gets_a_json_error_and_the_connection_closes(stack, raw, status):
    got_status, doc = _status_and_doc(exchange_raw(stack.port, raw))
    assert (got_status, doc["code"], doc["stage"]) == (status, 1, "request")


def test_keep_alive_serves_several_requests_on_one_connection(stack):
    one = b"GET /v1/nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /v1/nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = exchange_raw(stack.port, one + one + last)
    assert raw.count(b"HTTP/1.1 404 Not Found") == 3


def test_the_server_survives_all_of_this(stack, api):
    assert stack.api.alive()
    assert "Traceback" not in stack.api.output()
    assert api.call("GET", "/v1/balance").doc["code"] == 0
