"""Request signing of the HTTP customer API, shared by the server and by clients (tests, docs).

A request carries three headers:

    X-Account:   the account id
    X-Timestamp: the request's Unix time in seconds (decimal)
    X-Signature: hex HMAC-SHA256(secret, string_to_sign)

    string_to_sign = METHOD "\\n" REQUEST-TARGET "\\n" TIMESTAMP "\\n" hex SHA-256(body)

REQUEST-TARGET is the path with the query string exactly as sent ("/v1/reports?limit=10"); the
body hash of an empty body is that of b"". The policy daemon holds the secrets: the server hands
it the signature and the string (LoginRequest.http_signature / http_string_to_sign), and the
daemon checks the HMAC and that the time stamp is within login_clock_skew of its clock.
"""
from __future__ import annotations

import hashlib
import hmac
import time

ACCOUNT, TIMESTAMP, SIGNATURE = "X-Account", "X-Timestamp", "X-Signature"


def string_to_sign(method: str, target: str, timestamp: int | str, body: bytes) -> str:
    return f"{method}\n{target}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"


def sign(secret: str, method: str, target: str, timestamp: int | str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), string_to_sign(method, target, timestamp, body)
                    .encode("utf-8"), hashlib.sha256).hexdigest()


def signed_headers(account: str, secret: str, method: str, target: str, body: bytes = b"",
                   timestamp: int | None = None) -> dict[str, str]:
    """The three authentication headers for one request (now, unless `timestamp` is given)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {ACCOUNT: account, TIMESTAMP: str(ts),
            SIGNATURE: sign(secret, method, target, ts, body)}
