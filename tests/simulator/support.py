"""A real `smspolicy simulate-upstream` process, and a small blocking CMPP client for tests."""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from gateway.cmpp import (
    ActiveTest, ActiveTestResp, Connect, Deliver, DeliverResp, Framer, Submit, authenticator_source,
    encode, split_ucs2, timestamp_now,
)
from gateway.simulator import request
from tests.support.procs import Proc

_READY = re.compile(r"CMPP \(up to 0x(\w+)\) on ([\d.]+):(\d+), control on ([\d.]+):(\d+)")
_HTTP = re.compile(r"HTTP channel on http://([\d.]+):(\d+)/")


class SimulatorProc:
    def __init__(self, workdir: Path, accounts: str = "SIM001:pw1,SIM002:pw2",
                 extra: list[str] | None = None, http: bool = False, port: int = 0,
                 http_port: int = 0):
        workdir.mkdir(parents=True, exist_ok=True)
        self.args = ["simulate-upstream", "--listen", f"127.0.0.1:{port}", "--accounts", accounts,
                     "--log-level", "WARNING",
                     *(["--http-listen", f"127.0.0.1:{http_port}"] if http else []), *(extra or [])]
        self.proc = Proc(self.args, workdir / f"simulator-{time.time_ns()}.log")
        deadline = time.time() + 15
        while time.time() < deadline:
            out = self.proc.output()
            m = _READY.search(out)
            if m and (not http or _HTTP.search(out)):
                self.cmpp = (m.group(2), int(m.group(3)))
                self.control_address = (m.group(4), int(m.group(5)))
                if http:
                    h = _HTTP.search(out)
                    self.http_url = f"http://{h.group(1)}:{h.group(2)}/submit"
                return
            if not self.proc.alive():
                raise RuntimeError(f"simulator exited:\n{out}")
            time.sleep(0.05)
        self.proc.stop()
        raise RuntimeError(f"simulator not ready:\n{self.proc.output()}")

    def control(self, line: str) -> dict:
        return request(self.control_address, line)

    def submits(self, start: int = 0) -> list[dict]:
        return self.control(f"submits {start}")["submits"]

    def wait(self, predicate, timeout: float = 10.0, what: str = "condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self) -> None:
        self.proc.stop()


class CmppClient:
    """Blocking SP-side client: enough CMPP to drive the simulator packet by packet."""

    def __init__(self, address: tuple[str, int], version: int = 0x30, timeout: float = 5.0):
        self.version = version
        self.sock = socket.create_connection(address, timeout=timeout)
        self.framer = Framer(version)
        self.seq = 0
        self.delivers: list[Deliver] = []

    def close(self) -> None:
        self.sock.close()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send(self, packet) -> None:
        self.sock.sendall(encode(packet, self.version))

    def recv(self):
        """The next packet; DELIVERs are collected in self.delivers and not answered."""
        while True:
            packet = self.framer.next_packet()
            if packet is not None:
                return packet
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by the simulator")
            self.framer.feed(data)

    def login(self, account: str, secret: str, version: int | None = None):
        ts = timestamp_now()
        self.send(Connect(self.next_seq(), account, authenticator_source(account, secret, ts),
                          version or self.version, ts))
        return self.recv_skipping(lambda p: True)

    def recv_skipping(self, want):
        while True:
            packet = self.recv()
            if isinstance(packet, Deliver):
                self.delivers.append(packet)
            elif isinstance(packet, ActiveTest):
                self.send(ActiveTestResp(packet.sequence_id))
            if want(packet):
                return packet

    def submit(self, dests, text: str, src_id: str = "10690001", report: int = 1, **kw) -> list:
        """Send `text` (split for UCS2 when long); the SUBMIT_RESPs in order."""
        parts = split_ucs2(text, ref=42)
        seqs = []
        for i, part in enumerate(parts, 1):
            seq = self.next_seq()
            seqs.append(seq)
            self.send(Submit(seq, pk_total=len(parts), pk_number=i, registered_delivery=report,
                             tp_udhi=1 if len(parts) > 1 else 0, msg_fmt=8, src_id=src_id,
                             dest_terminal_ids=tuple(dests), msg_content=part, **kw))
        return [self.recv_skipping(lambda p, s=s: getattr(p, "sequence_id", None) == s
                                   and not isinstance(p, Deliver)) for s in seqs]

    def wait_delivers(self, count: int, ack: bool = True) -> list[Deliver]:
        while len(self.delivers) < count:
            self.recv_skipping(lambda p: isinstance(p, Deliver))
        if ack:
            for d in self.delivers:
                self.send(DeliverResp(d.sequence_id, d.msg_id, 0))
        return self.delivers[:count]
