"""The simulator's HTTP channel: the other protocol an upstream may speak (Channel.protocol http).

The protocol is ours (gateway/forwarder/http_channel.py is the client) and synchronous:

    POST <http_url>   Content-Type: application/json
    {"account": "...", "timestamp": "MMDDHHMMSS", "sign": md5hex(account + secret + timestamp),
     "id": "<sender's id>", "src_id": "...", "dest": "138...", "content": "text"}

    200 {"result": 0, "msg_id": "<upstream id>", "stat": "DELIVRD"}   accepted, final state
    200 {"result": N}                                                  refused (N != 0)
    401 {"result": 3}                                                  bad account or sign

The same content markers as on CMPP apply: result=N, noresp (never answers), drop (closes
without an answer), delay=S, stat=XXXXXXX.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from .faults import FaultPlan

log = logging.getLogger("gateway.simulator.http")
_MAX_BODY = 64 * 1024


def sign(account: str, secret: str, timestamp: str) -> str:
    return hashlib.md5(f"{account}{secret}{timestamp}".encode("utf-8")).hexdigest()


class HttpChannel:
    def __init__(self, accounts: dict[str, str], plan: FaultPlan):
        self.accounts = accounts
        self.plan = plan
        self.requests: list[dict] = []  # every accepted-for-processing request, for tests
        self._ids = 0

    async def start(self, host: str, port: int) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._serve, host, port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, answer = await self._handle(reader)
            if status is None:  # drop
                writer.transport.abort()
                return
            body = json.dumps(answer).encode("utf-8")
            writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode("ascii") + body)
            await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            log.info("HTTP channel request failed: %s", e)
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int | None, dict]:
        request_line = (await reader.readline()).decode("latin-1").split()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(request_line) < 2 or request_line[0] != "POST":
            return 405, {"result": 2, "error": "POST only"}
        if not 0 <= length <= _MAX_BODY:
            return 413, {"result": 4, "error": "body too large"}
        try:
            doc = json.loads(await reader.readexactly(length))
            account, timestamp = str(doc["account"]), str(doc["timestamp"])
            given_sign, dest, text = doc["sign"], str(doc["dest"]), str(doc["content"])
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            return 400, {"result": 1, "error": "expected JSON with account, timestamp, sign, "
                                               "dest, content"}
        secret = self.accounts.get(account)
        if secret is None or given_sign != sign(account, secret, timestamp):
            return 401, {"result": 3, "error": "bad account or sign"}
        self.requests.append(doc)
        outcome = self.plan.outcome(text)
        fault = outcome.fault
        kind = fault.kind if fault else None
        if kind == "drop":
            return None, {}
        if kind == "noresp":
            await asyncio.sleep(3600)
        if kind == "delay":
            await asyncio.sleep(fault.value)
        if kind == "result":
            return 200, {"result": fault.value}
        self._ids += 1
        return 200, {"result": 0, "msg_id": f"H{self._ids:08d}", "dest": dest,
                     "stat": outcome.stat or self.plan.report_stat()}
