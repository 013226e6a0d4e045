"""Pure parts of the HTTP API: signing, the daemon's check of it, the replay guard."""
from __future__ import annotations

import hashlib
import hmac

from gateway.http_api.replay import ReplayGuard
from gateway.http_api.signing import sign, signed_headers, string_to_sign
from policy.daemon.login import _http_signature_refused


def test_string_to_sign_is_method_target_time_and_body_hash():
    body = b'{"ids":[1]}'
    assert string_to_sign("POST", "/v1/reports/ack", 1700000000, body) == (
        "POST\n/v1/reports/ack\n1700000000\n" + hashlib.sha256(body).hexdigest())
    assert string_to_sign("GET", "/v1/reports?limit=5", "1700000000", b"").endswith(
        "\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_signature_is_hex_hmac_sha256_of_that_string():
    expected = hmac.new(b"s3cret", string_to_sign("GET", "/v1/balance", 1, b"").encode(),
                        hashlib.sha256).hexdigest()
    assert sign("s3cret", "GET", "/v1/balance", 1, b"") == expected
    assert signed_headers("900004", "s3cret", "GET", "/v1/balance", timestamp=1) == {
        "X-Account": "900004", "X-Timestamp": "1", "X-Signature": expected}


def _check(secret="k", sig_secret="k", ts=1000, signed_ts=1000, now=1000.0, skew=300):
    text = string_to_sign("GET", "/v1/balance", signed_ts, b"")
    digest = bytes.fromhex(sign(sig_secret, "GET", "/v1/balance", signed_ts, b""))
    return _http_signature_refused(secret, digest, text, ts, now, skew)


def test_the_daemon_checks_secret_signed_time_and_skew():
    assert _check() == ""
    assert "does not match" in _check(sig_secret="other")
    assert "not the request's" in _check(ts=1001)                 # fresh time, old signature
    assert "too far" in _check(now=1301.0)
    assert "too far" in _check(now=699.0)
    assert _check(now=1300.0) == ""


def test_replay_guard_refuses_a_signature_once_used_until_its_window_ends():
    guard = ReplayGuard(skew=300)
    assert guard.claim("a", 1000, now=1000.0)
    assert not guard.claim("a", 1000, now=1200.0)
    assert guard.claim("b", 1000, now=1200.0)
    guard.release("b")
    assert guard.claim("b", 1000, now=1200.0)                     # refused requests may retry
    assert guard.claim("a", 1000, now=1302.0)                     # the daemon refuses it now
    assert len(guard) <= 2


def test_connections_over_the_cap_are_answered_503(tmp_path, monkeypatch):
    import asyncio

    from gateway.http_api import server as api_server
    from policy.settings import load_settings
    monkeypatch.setattr(api_server, "MAX_CONNECTIONS", 2)
    settings = load_settings(None, env={}, overrides={
        "http_listen": "127.0.0.1:0", "data_dir": str(tmp_path), "policy_target": "127.0.0.1:9"})

    async def go():
        srv = api_server.ApiServer(settings, 5)
        host, port = await srv.start()
        try:
            held = [await asyncio.open_connection(host, port) for _ in range(2)]
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection(host, port)
            answer = await asyncio.wait_for(reader.read(), 5)
            for _, w in [*held, (reader, writer)]:
                w.close()
            return answer
        finally:
            await srv.stop()
    answer = asyncio.run(go())
    assert answer.startswith(b"HTTP/1.1 503 ") and b'"code":8' in answer
