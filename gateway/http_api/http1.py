"""Just enough HTTP/1.1 for a JSON API, on asyncio streams: one request at a time per
connection (keep-alive, no pipelining), bodies by Content-Length only.

Whatever a client sends, reading ends in a Request, in None (the client closed or went quiet
between requests), or in an HttpError that the server answers with its status before closing:
a malformed head (400), a head over MAX_HEAD bytes (431), a chunked body (411), a body over the
limit (413, refused from Content-Length before it is read). A head must arrive within
HEAD_TIMEOUT of the previous answer, a body within BODY_TIMEOUT of its head.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT = 30.0
BODY_TIMEOUT = 30.0
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class HttpError(Exception):
    """The request cannot be read; answered with `status`, then the connection closes."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str                  # as sent: path and query ("/v1/reports?limit=10")
    path: str
    query: str
    headers: dict[str, str]      # names in lower case
    body: bytes
    keep_alive: bool


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       max_body: int) -> Request | None:
    """The next request on the connection; the reader's limit must be at least MAX_HEAD."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head over {MAX_HEAD} bytes") from None
    if len(head) > MAX_HEAD:
        raise HttpError(431, f"request head over {MAX_HEAD} bytes")
    method, target, version, headers = _parse_head(head)
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if "transfer-encoding" in headers:
        raise HttpError(411, "chunked or encoded bodies are not accepted; send Content-Length")
    length = _content_length(headers.get("content-length", "0"))
    if length > max_body:
        raise HttpError(413, f"body of {length} bytes; at most {max_body} are accepted")
    if length and headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        body = await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT) if length else b""
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return None
    path, _, query = target.partition("?")
    return Request(method, target, path, query, headers, body, keep_alive)


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN \
            or not parts[1].startswith("/") or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name) <= _TOKEN:
            raise HttpError(400, f"malformed header field {line[:80]!r}")
        name, value = name.lower(), value.strip()
        if name in headers:
            if name == "content-length" and headers[name] != value:
                raise HttpError(400, "conflicting Content-Length fields")
            value = headers[name] if name == "content-length" else f"{headers[name]}, {value}"
        headers[name] = value
    return parts[0], parts[1], parts[2], headers


def _content_length(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise HttpError(400, f"Content-Length {text[:20]!r} is not a byte count")
    return int(text)


def response(status: int, doc: dict, keep_alive: bool,
             headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
             "Content-Type: application/json; charset=utf-8",
             f"Content-Length: {len(body)}",
             "Connection: keep-alive" if keep_alive else "Connection: close",
             *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body
