"""The whole chain for the HTTP API on loopback: policy daemon, upstream simulator (with its HTTP
channel), forwarder (with the report pusher), CMPP front-end and `smspolicy http-api`, real
processes on a copy of the shipped rules, plus a customer's report-push receiver and a signing
HTTP client (urllib)."""
from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gateway.http_api.signing import signed_headers
from tests.forwarder.support import ForwarderProc
from tests.forwarder.test_end_to_end import _rules_copy
from tests.simulator.support import SimulatorProc
from tests.support.procs import DaemonProc, Proc, free_port

HTTP_ACCOUNT, HTTP_SECRET = "900004", "http-900004-secret"   # shipped; push answered OK here
REFUSED_PUSH = ("900106", "http-900106")   # its push URL answers without the OK body (252)
PULL_ONLY = ("900107", "http-900107")      # no push URL (253): reports are pulled
BOUND_ELSEWHERE = ("900104", "http-900104")
DISABLED = ("900105", "http-900105")
PREPAID_BALANCE = 1000

_TEST_ACCOUNTS = """
accounts:
  - {{id: "900104", name: HTTP bound elsewhere, secret: "http-900104", access_mode: http,
     bound_ips: [10.9.9.0/24], access_code: "1069104", channels: [ch-http]}}
  - {{id: "900105", name: HTTP disabled, secret: "http-900105", access_mode: http,
     status: disabled, access_code: "1069105", channels: [ch-http]}}
  - {{id: "900106", name: HTTP push refused, secret: "http-900106", access_mode: http,
     access_code: "1069106", push_url: "{push}/refuse", billing: prepaid,
     balance: {balance}, price: 5, channels: [ch-http]}}
  - {{id: "900107", name: HTTP pull only, secret: "http-900107", access_mode: http,
     access_code: "1069107", channels: [ch-http]}}
"""


@dataclass
class Answer:
    status: int
    doc: dict
    headers: dict


class ApiClient:
    """A customer's client: signs every request (X-Account, X-Timestamp, X-Signature)."""

    def __init__(self, base: str, account: str = HTTP_ACCOUNT, secret: str = HTTP_SECRET):
        self.base, self.account, self.secret = base, account, secret

    def call(self, method: str, target: str, doc=None, *, body: bytes | None = None,
             headers: dict | None = None, timestamp: int | None = None, sign: bool = True,
             content_type: str = "application/json") -> Answer:
        if body is None:
            body = b"" if doc is None else json.dumps(doc, ensure_ascii=False).encode("utf-8")
        h = signed_headers(self.account, self.secret, method, target, body, timestamp) \
            if sign else {}
        if method == "POST":
            h["Content-Type"] = content_type
        h.update(headers or {})
        return send(self.base + target, method, body if method == "POST" else None, h)

    def submit(self, content: str, mobiles: list[str], **extra) -> Answer:
        return self.call("POST", "/v1/sms/submit", {"content": content, "mobiles": mobiles,
                                                    **extra})

    def p2p(self, pairs, **extra) -> Answer:
        return self.call("POST", "/v1/sms/p2p", {"mobileContentList": pairs, **extra})

    def pull(self, cursor: int = 0, limit: int = 100) -> Answer:
        return self.call("GET", f"/v1/reports?cursor={cursor}&limit={limit}")

    def ack(self, ids: list[int]) -> Answer:
        return self.call("POST", "/v1/reports/ack", {"ids": ids})


def send(url: str, method: str, body: bytes | None, headers: dict) -> Answer:
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return Answer(resp.status, json.loads(resp.read()), dict(resp.headers))
    except urllib.error.HTTPError as e:
        return Answer(e.code, json.loads(e.read()), dict(e.headers))


def exchange_raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class PushReceiver:
    """The customer's push URL: /ok answers the OK body, /refuse something else."""

    def __init__(self):
        self.received: list[tuple[str, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((self.path, doc))
                answer = b"OK" if self.path == "/ok" else b"NOPE"
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pushed(self, path: str) -> dict[str, dict]:
        """msg_id -> report, of every report pushed to `path`."""
        return {r["msg_id"]: r for p, doc in self.received if p == path for r in doc["reports"]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_api(work: Path, policy_target: str, data: Path,
              env: dict | None = None) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc(["http-api", "--listen", f"127.0.0.1:{port}", "--policy", policy_target,
                 "--data", str(data)], work / f"http-api-{time.time_ns()}.log", env)
    wait_for(lambda: "HTTP API listening" in proc.output() or not proc.alive(), 20, "http-api")
    if not proc.alive():
        raise RuntimeError(f"http-api exited:\n{proc.output()}")
    return proc, port


class ApiStack:
    REPORT_LEASE = 1.0   # seconds before an unacknowledged pulled report is handed out again

    def __init__(self, work: Path):
        self.work = work
        self.receiver = PushReceiver()
        cmpp_port, http_port = free_port(), free_port()
        self.rules = _rules_copy(work / "rules", cmpp_port, http_port, False, 0)
        accounts = self.rules / "accounts.yaml"
        accounts.write_text(accounts.read_text(encoding="utf-8").replace(
            "http://127.0.0.1:8089/report", f"{self.receiver.url}/ok"), encoding="utf-8")
        (self.rules / "http-tests.yaml").write_text(_TEST_ACCOUNTS.format(
            push=self.receiver.url, balance=PREPAID_BALANCE), encoding="utf-8")
        self.data = work / "var"
        self.procs = []
        try:
            self.sim = SimulatorProc(work / "sim", accounts="", http=True, port=cmpp_port,
                                     http_port=http_port,
                                     extra=["--rules", str(self.rules), "--report-delay", "0.1"])
            self.procs.append(self.sim)
            self.daemon = DaemonProc(work / "daemon", rules_dir=self.rules)
            self.procs.append(self.daemon)
            self.forwarder = ForwarderProc(work, self.rules, self.data,
                                           {"SMSPOLICY_PUSH_RETRIES": "0",
                                            "SMSPOLICY_PUSH_TIMEOUT": "2"})
            self.procs.append(self.forwarder)
            self.gateway_port = free_port()
            self.gateway = Proc(["gateway", "--listen", f"127.0.0.1:{self.gateway_port}",
                                 "--policy", self.daemon.target, "--data", str(self.data)],
                                work / "gateway.log")
            self.procs.append(self.gateway)
            wait_for(lambda: "CMPP gateway listening" in self.gateway.output(), 20, "gateway")
            self.api, self.port = start_api(work, self.daemon.target, self.data,
                                            {"SMSPOLICY_REPORT_RESEND": str(self.REPORT_LEASE)})
            self.procs.append(self.api)
        except BaseException:
            self.stop()
            raise
        self.base = f"http://127.0.0.1:{self.port}"

    def client(self, account: str = HTTP_ACCOUNT, secret: str = HTTP_SECRET) -> ApiClient:
        return ApiClient(self.base, account, secret)

    def _query(self, sql: str, args=()) -> list[tuple]:
        with sqlite3.connect(self.data / "gateway.db") as db:
            return db.execute(sql, args).fetchall()

    def outbox(self, msg_id: str) -> dict:
        keys = ("account_id", "dest", "src_id", "channel_id", "segments", "registered_delivery",
                "content")
        rows = self._query(f"SELECT {', '.join(keys)} FROM outbox WHERE msg_id = ?", (msg_id,))
        return dict(zip(keys, rows[0])) if rows else {}

    def reports(self, msg_ids) -> dict[str, list[str]]:
        """msg_id -> the Stat of each report created for it so far."""
        marks = ",".join("?" * len(msg_ids))
        found: dict[str, list[str]] = {}
        for msg_id, stat in self._query(f"SELECT msg_id, stat FROM reports WHERE msg_id IN"
                                        f" ({marks}) ORDER BY id", [str(m) for m in msg_ids]):
            found.setdefault(msg_id, []).append(stat)
        return found

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.receiver.close()
