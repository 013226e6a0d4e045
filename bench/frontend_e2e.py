"""End-to-end throughput and latency of the CMPP front-end, beside a codec-only echo server.

    PYTHONPATH=. python bench/frontend_e2e.py [--seconds 10] [--connections 4] [--window 16]

Three servers, separate processes, measured one after the other in the same run with the same
load generator (this process): `connections` CMPP 2.x connections of the demo account, each
keeping `window` SUBMITs in flight.

* codec echo: decodes each SUBMIT with gateway.cmpp and answers at once — the floor set by
  Python, the codec and loopback TCP on this machine;
* front-end + stub daemon: `smspolicy gateway` with a PolicyService that decides nothing (every
  recipient accepted): the front-end's own cost, SQLite outbox included;
* front-end + policy daemon: the whole path — client -> `smspolicy gateway` -> `smspolicy serve`
  (shipped rules) -> SQLite outbox -> SUBMIT_RESP.

The ratio to the echo server is the figure; each line also shows the CPU each process used
(% of one core) while it was measured.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.cmpp import (  # noqa: E402
    V21, Connect, ConnectResp, MsgIdGenerator, Submit, SubmitResp, authenticator_source, decode,
    decode_connect, encode, timestamp_now,
)

ACCOUNT, SECRET, SRC = "900001", "888888", "106900001"
TEXT = "【云信科技】您的验证码是{}，5分钟内有效"
_HEADER = struct.Struct(">III")


# ---------------------------------------------------------------- the codec-only echo server
class Echo(asyncio.Protocol):
    msgids = MsgIdGenerator(2)

    def connection_made(self, transport):
        self.transport, self.buf, self.version = transport, bytearray(), None

    def data_received(self, data):
        self.buf += data
        buf, pos = self.buf, 0
        while len(buf) - pos >= 12:
            total = _HEADER.unpack_from(buf, pos)[0]
            if len(buf) - pos < total:
                break
            frame = bytes(buf[pos:pos + total])
            pos += total
            if self.version is None:
                p = decode_connect(frame)
                self.version = p.version
                self.transport.write(encode(ConnectResp(p.sequence_id, 0, bytes(16), p.version), p.version))
                continue
            p = decode(frame, self.version)
            if type(p) is Submit:
                self.transport.write(encode(SubmitResp(p.sequence_id, self.msgids.next(), 0), self.version))
        del buf[:pos]


async def serve_echo(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    print("echo ready", flush=True)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- a policy daemon that decides nothing
async def serve_stub_daemon(port: int) -> None:
    """PolicyService answering at once (login ok, every recipient accepted): the front-end's
    own cost, with the real daemon's evaluation taken out."""
    import uuid

    import grpc

    from gateway.cmpp import authenticator_ismg
    from policy.api.v1 import policy_pb2 as pb
    from policy.api.v1 import policy_pb2_grpc as pb_grpc

    def decide(r):
        resp = pb.EvaluateResponse(request_id=r.request_id, decision_id=uuid.uuid4().hex)
        for dest, mid in zip(r.destinations, r.message_ids):
            resp.recipients.add(destination=dest, action=pb.ACTION_ACCEPT, channel_id="ch-cmcc",
                                segments=1, message_id=mid)
        return resp

    class Stub(pb_grpc.PolicyServiceServicer):
        async def Login(self, r, context):
            return pb.LoginResponse(status=0, session_id=uuid.uuid4().hex, lease_seconds=60,
                                    authenticator_ismg=authenticator_ismg(
                                        0, r.authenticator_source, SECRET, r.version))

        async def Evaluate(self, r, context):
            return decide(r)

        async def EvaluateBatch(self, r, context):
            return pb.EvaluateBatchResponse(responses=[decide(x) for x in r.requests])

        async def RenewSession(self, r, context):
            return pb.SessionResponse(ok=True)

        async def EndSession(self, r, context):
            return pb.SessionResponse(ok=True)

    server = grpc.aio.server()
    pb_grpc.add_PolicyServiceServicer_to_server(Stub(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("stub ready", flush=True)
    await server.wait_for_termination()


# ---------------------------------------------------------------- the load generator
class Load(asyncio.Protocol):
    """One customer connection keeping `window` SUBMITs in flight."""

    numbers = itertools.count()

    def __init__(self, window: int, latencies: list, results: Counter, stop_at: list):
        self.window, self.latencies, self.results, self.stop_at = window, latencies, results, stop_at
        self.buf, self.sent, self.seq = bytearray(), {}, itertools.count(2)
        self.logged_in = asyncio.get_running_loop().create_future()
        self.measuring = False

    def connection_made(self, transport):
        self.transport = transport

    def login(self, offset: int) -> None:
        now = datetime.fromtimestamp(time.time() + offset, ZoneInfo("Asia/Shanghai"))
        ts = timestamp_now(now)
        self.transport.write(encode(Connect(1, ACCOUNT, authenticator_source(ACCOUNT, SECRET, ts), V21, ts), V21))

    def start(self) -> None:
        for _ in range(self.window):
            self.submit()

    def submit(self) -> None:
        n = next(self.numbers)
        seq = next(self.seq)
        packet = Submit(seq, registered_delivery=1, msg_fmt=8, msg_src=ACCOUNT, src_id=SRC,
                        dest_terminal_ids=(f"139{12300000 + n % 100000:08d}",),
                        msg_content=TEXT.format(n % 1000000).encode("utf-16-be"))
        self.sent[seq] = time.perf_counter()
        self.transport.write(encode(packet, V21))

    def data_received(self, data):
        self.buf += data
        buf, pos = self.buf, 0
        while len(buf) - pos >= 12:
            total, cmd, seq = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos < total:
                break
            frame = bytes(buf[pos:pos + total])
            pos += total
            if cmd == 0x80000001:
                status = decode(frame, V21).status
                if not self.logged_in.done():
                    self.logged_in.set_result(status)
            elif cmd == 0x80000004:
                resp = decode(frame, V21)
                started = self.sent.pop(seq)
                if self.measuring:
                    self.latencies.append(time.perf_counter() - started)
                    self.results[resp.result] += 1
                if time.perf_counter() < self.stop_at[0]:
                    self.submit()
            elif cmd == 0x00000005:  # a status report: acknowledge it as a customer would
                msg_id = struct.unpack_from(">Q", frame, 12)[0]
                self.transport.write(struct.pack(">IIIQB", 21, 0x80000005, seq, msg_id, 0))
            elif cmd == 0x00000008:
                self.transport.write(struct.pack(">IIIB", 13, 0x80000008, seq, 0))
        del buf[:pos]


async def measure(port: int, connections: int, window: int, seconds: float, warmup: float = 1.0):
    loop = asyncio.get_running_loop()
    latencies, results, stop_at = [], Counter(), [time.perf_counter() + warmup + seconds]
    conns = []
    for i in range(connections):
        _, proto = await loop.create_connection(
            lambda: Load(window, latencies, results, stop_at), "127.0.0.1", port)
        proto.login(offset=i + int(time.time()) % 7 * 10)
        status = await asyncio.wait_for(proto.logged_in, 10)
        if status != 0:
            raise SystemExit(f"login refused with status {status}")
        conns.append(proto)
    gc.disable()  # the load generator's own collector pauses would show up as latency
    for c in conns:
        c.start()
    await asyncio.sleep(warmup)
    for c in conns:
        c.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    for c in conns:
        c.measuring = False
    await asyncio.sleep(0.5)
    for c in conns:
        c.transport.close()
    gc.enable()
    latencies.sort()
    n = len(latencies)
    return {
        "submits": n, "rate": n / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if n else float("nan"),
        "p99_ms": latencies[int(n * 0.99) - 1] * 1000 if n else float("nan"),
        "results": dict(results),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured(port: int, args, pids: dict[str, int]) -> dict:
    """measure() plus the CPU each process used meanwhile, in % of one core."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    result = asyncio.run(measure(port, args.connections, args.window, args.seconds))
    wall = time.perf_counter() - started
    result["cpu"] = {name: 100 * (cpu_seconds(pid) - before[name]) / wall
                     for name, pid in pids.items()}
    return result


def show(label: str, r: dict) -> None:
    cpu = "  ".join(f"{name} {pct:.0f}%" for name, pct in r["cpu"].items())
    print(f"{label}: {r['rate']:8.0f} submits/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
          f"  results {r['results']}  cpu: {cpu}")


def wait_line(proc: subprocess.Popen, log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"{proc.args} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--policy", help="use this running policy daemon instead of starting one")
    ap.add_argument("--echo", type=int, help=argparse.SUPPRESS)  # internal: run the echo server
    ap.add_argument("--stub", type=int, help=argparse.SUPPRESS)  # internal: run the stub daemon
    args = ap.parse_args()
    if args.echo:
        asyncio.run(serve_echo(args.echo))
        return
    if args.stub:
        asyncio.run(serve_stub_daemon(args.stub))
        return

    from tests.support.procs import DaemonProc, free_port
    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="frontend_e2e_"))
    procs = []

    def spawn(name: str, argv: list[str], ready: str) -> subprocess.Popen:
        log = work / f"{name}.log"
        proc = subprocess.Popen([sys.executable, *argv], cwd=repo, stdout=open(log, "wb"),
                                stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_line(proc, log, ready)
        return proc

    def gateway(name: str, target: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = spawn(name, ["-m", "policy", "gateway", "--listen", f"127.0.0.1:{port}",
                            "--policy", target, "--data", str(work / name),
                            "--log-level", "WARNING"], "CMPP gateway listening")
        return proc, port

    daemon = None if args.policy else DaemonProc(work / "daemon")
    try:
        echo_port, stub_port = free_port(), free_port()
        echo = spawn("echo", [__file__, "--echo", str(echo_port)], "echo ready")
        stub = spawn("stub", [__file__, "--stub", str(stub_port)], "stub ready")
        gw_stub, gw_stub_port = gateway("gateway-stub", f"127.0.0.1:{stub_port}")
        gw, gw_port = gateway("gateway", args.policy or daemon.target)
        print(f"load: {args.connections} connections x window {args.window}, "
              f"{args.seconds:g} s each")
        me = os.getpid()
        echo_res = run_measured(echo_port, args, {"echo": echo.pid, "client": me})
        show("codec echo               ", echo_res)
        alone = run_measured(gw_stub_port, args, {"gateway": gw_stub.pid, "stub": stub.pid,
                                                  "client": me})
        show("front-end + stub daemon  ", alone)
        pids = {"gateway": gw.pid, "client": me}
        if daemon is not None:
            pids["daemon"] = daemon.proc.popen.pid
        e2e = run_measured(gw_port, args, pids)
        show("front-end + policy daemon", e2e)
        for label, r in (("front-end + stub daemon", alone), ("front-end + policy daemon", e2e)):
            print(f"ratio {label} / echo: {r['rate'] / echo_res['rate']:.2f} of the throughput, "
                  f"p99 x{r['p99_ms'] / echo_res['p99_ms']:.1f}")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        if daemon is not None:
            daemon.stop()


if __name__ == "__main__":
    main()
