"""HTTP report push from a real forwarder process to a real local http.server."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.push import PushLog
from gateway.store import Message, Recipient
from tests.forwarder.support import ForwarderProc
from tests.support.procs import free_port


class Customer(BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []
    flaky_calls = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Customer.received.append((self.path, body))
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/flaky":
            Customer.flaky_calls += 1
        answer = {"/ok": "OK", "/custom": " SUCCESS\n", "/wrong": "ERROR", "/slow": "OK",
                  "/flaky": "ERR" if Customer.flaky_calls == 1 else "OK"}[self.path]
        data = answer.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def customer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Customer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def pushing(tmp_path_factory, customer):
    work = tmp_path_factory.mktemp("push")
    rules = work / "rules"
    rules.mkdir()
    dead = f"http://127.0.0.1:{free_port()}/report"
    (rules / "r.yaml").write_text(f"""
accounts:
  - {{id: "900011", name: ok, secret: s, access_code: "1069011", push_url: "{customer}/ok"}}
  - {{id: "900012", name: custom, secret: s, access_code: "1069012", push_url: "{customer}/custom",
     push_ok_body: SUCCESS}}
  - {{id: "900013", name: wrong, secret: s, access_code: "1069013", push_url: "{customer}/wrong"}}
  - {{id: "900014", name: nourl, secret: s, access_code: "1069014", access_mode: http}}
  - {{id: "900015", name: dead, secret: s, access_code: "1069015", push_url: "{dead}"}}
  - {{id: "900016", name: slow, secret: s, access_code: "1069016", push_url: "{customer}/slow"}}
  - {{id: "900017", name: flaky, secret: s, access_code: "1069017", push_url: "{customer}/flaky"}}
""")
    f = ForwarderProc(work, rules, work / "var",
                      {"SMSPOLICY_PUSH_TIMEOUT": "0.5", "SMSPOLICY_PUSH_RETRIES": "1"})
    yield f
    f.stop()


def _report(fwd: ForwarderProc, account: str, msg_id: int, stat: str = "MA:0001") -> None:
    msg = Message(f"r{msg_id}", "d", account, "1069", "svc", 8, b"\x00x", True, time.time())
    fwd.store.accept_message(msg, [Recipient("13800138000", (msg_id,), "reject", stat=stat)])


def _outcome(fwd: ForwarderProc, account: str, msg_id: int, timeout: float = 8.0):
    log = PushLog(str(fwd.data / "gateway.db"))
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            found = log.for_message(account, msg_id)
            if found and found[0].final:
                return found[0]
            time.sleep(0.05)
    finally:
        log.close()
    raise AssertionError(f"no final push outcome for {account}/{msg_id}:\n{fwd.proc.output()[-2000:]}")


def _state(fwd: ForwarderProc, msg_id: int) -> str:
    return fwd.store._db.execute("SELECT state FROM reports WHERE msg_id = ?",
                                 (str(msg_id),)).fetchone()[0]


def test_push_received_with_the_ok_body_is_outcome_0(pushing):
    _report(pushing, "900011", 71)
    _report(pushing, "900012", 72)
    for account, msg_id in (("900011", 71), ("900012", 72)):
        o = _outcome(pushing, account, msg_id)
        assert (o.outcome, o.attempts, o.final) == (0, 1, True)
        assert _state(pushing, msg_id) == "acked"
    path, body = next((p, b) for p, b in Customer.received if p == "/ok")
    assert body["account"] == "900011"
    [one] = body["reports"]
    assert (one["msg_id"], one["mobile"], one["stat"]) == ("71", "13800138000", "MA:0001")


def test_failed_pushes_are_retried_then_final(pushing):
    cases = [("900013", 73, 252), ("900014", 74, 253), ("900015", 75, 253), ("900016", 76, 254)]
    for account, msg_id, _ in cases:
        _report(pushing, account, msg_id)
    for account, msg_id, outcome in cases:
        o = _outcome(pushing, account, msg_id)
        assert (o.outcome, o.attempts, o.final) == (outcome, 2, True), o  # push_retries 1
        assert _state(pushing, msg_id) == "sent"


def test_a_retry_that_succeeds_ends_with_outcome_0(pushing):
    _report(pushing, "900017", 77)
    o = _outcome(pushing, "900017", 77)
    assert (o.outcome, o.attempts) == (0, 2)
    assert [p for p, _ in Customer.received].count("/flaky") == 2


def test_pending_pushes_survive_a_restart(pushing):
    pushing.stop()
    _report(pushing, "900011", 78, stat="DELIVRD")
    _report(pushing, "900011", 79, stat="MO:200")
    pushing.start()
    assert _outcome(pushing, "900011", 78).outcome == 0
    assert _outcome(pushing, "900011", 79).outcome == 0
    stats = {r["msg_id"]: r["stat"] for p, b in Customer.received if p == "/ok"
             for r in b["reports"]}
    assert stats["78"] == "DELIVRD" and stats["79"] == "MO:200"
