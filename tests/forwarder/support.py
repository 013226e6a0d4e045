"""A forwarder process over a gateway store the test fills itself (as the front-end would),
against a real simulator process."""
from __future__ import annotations

import itertools
import re
import sqlite3
import time
from pathlib import Path

from gateway.store import GatewayStore, Message, Recipient
from tests.simulator.support import SimulatorProc
from tests.support.procs import Proc, free_port

_msg_ids = itertools.count(1_000_000)


def write_rules(folder: Path, sim: SimulatorProc, dead_port: int) -> Path:
    host, port = sim.cmpp
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "forwarding.yaml").write_text(f"""
accounts:
  - {{id: "900001", name: one, secret: "888888", access_code: "106900001"}}
  - {{id: "900002", name: two, secret: "888888", access_code: "1069000012"}}
channels:
  - {{id: ch-a, name: A, carriers: [cmcc], host: {host}, port: {port}, account: SIM001,
     secret: pw1, version: 0x30, window: 4}}
  - {{id: ch-b, name: B, carriers: [cmcc], host: {host}, port: {port}, account: SIM002,
     secret: pw2, version: 0x20, supports_long: false}}
  - {{id: ch-w, name: W, carriers: [cmcc], host: {host}, port: {port}, account: SIM003,
     secret: pw3, version: 0x21, window: 3, rate: 20}}
  - {{id: ch-h, name: H, carriers: [cmcc], protocol: http, http_url: "{sim.http_url}",
     account: SIM001, secret: pw1}}
  - {{id: ch-dead, name: D, carriers: [cmcc], protocol: http,
     http_url: "http://127.0.0.1:{dead_port}/submit", account: SIM001, secret: pw1}}
""", encoding="utf-8")
    return folder


class ForwarderProc:
    ENV = {"SMSPOLICY_UPSTREAM_SUBMIT_TIMEOUT": "1", "SMSPOLICY_UPSTREAM_RECONNECT_MAX": "0.5",
           "SMSPOLICY_ACTIVE_TEST_INTERVAL": "0.5", "SMSPOLICY_RESPONSE_TIMEOUT": "0.5"}

    def __init__(self, workdir: Path, rules: Path, data: Path, env: dict | None = None):
        self.workdir, self.rules, self.data = workdir, rules, data
        self.env = {**self.ENV, **(env or {})}
        data.mkdir(parents=True, exist_ok=True)
        self.store = GatewayStore(data / "gateway.db")
        self.start()

    def start(self) -> None:
        self.proc = Proc(["forward", "--rules", str(self.rules), "--data", str(self.data),
                          "--log-level", "INFO"],
                         self.workdir / f"forwarder-{time.time_ns()}.log", self.env)
        deadline = time.time() + 15
        while "forwarder: store" not in self.proc.output():
            if not self.proc.alive() or time.time() > deadline:
                raise RuntimeError(f"forwarder did not start:\n{self.proc.output()}")
            time.sleep(0.05)

    def kill9(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()

    def logins(self) -> int:
        return len(re.findall("logged in to", self.proc.output()))

    # -- the front-end's side of the store -------------------------------------------------------
    def put(self, channel: str, text: str, dest: str = "13800138000", parts: int = 1,
            account: str = "900001", msg_fmt: int = 8, udh: bytes = b"",
            content: bytes | None = None) -> tuple[int, ...]:
        """One accepted message for one recipient; the customer's Msg_Ids (one per part)."""
        msg_ids = tuple(next(_msg_ids) for _ in range(parts))
        if content is None:
            content = text.encode("utf-16-be" if msg_fmt == 8 else "ascii")
        msg = Message(f"req-{msg_ids[0]}", f"dec-{msg_ids[0]}", account, "106900001", "svc",
                      msg_fmt, content, True, time.time(), udh)
        self.store.accept_message(msg, [Recipient(dest, msg_ids, "accept", channel)])
        return msg_ids

    def stats(self, msg_ids) -> list[str]:
        with sqlite3.connect(self.data / "gateway.db") as db:
            marks = ",".join("?" * len(msg_ids))
            rows = db.execute(f"SELECT msg_id, stat FROM reports WHERE msg_id IN ({marks})"
                              f" ORDER BY id", [str(m) for m in msg_ids]).fetchall()
        return [stat for _, stat in rows]

    def wait_stats(self, msg_ids, timeout: float = 10.0) -> list[str]:
        """The reports of these Msg_Ids once there is one per Msg_Id (more would be a bug)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            stats = self.stats(msg_ids)
            if len(stats) >= len(msg_ids):
                return stats
            time.sleep(0.05)
        raise AssertionError(f"reports for {msg_ids}: only {self.stats(msg_ids)} after {timeout}s;"
                             f"\nforwarder log:\n{self.proc.output()[-3000:]}")

    def mo_rows(self) -> list[tuple]:
        with sqlite3.connect(self.data / "gateway.db") as db:
            return db.execute("SELECT account_id, dest_id, src_terminal_id, content, msg_fmt"
                              " FROM mo ORDER BY id").fetchall()


def dead_port() -> int:
    return free_port()
