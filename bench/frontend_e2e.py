"""End-to-end throughput and latency of the CMPP front-end, beside a codec-only echo server.

    PYTHONPATH=. python bench/frontend_e2e.py [--seconds 10] [--connections 4] [--window 16]
        [--rows echo,stub,daemon,daemon-none,chain,redis-1,redis-2] [--runs 1]

Separate processes, measured one after the other in the same run with the same load generator
(this process): `connections` CMPP 2.x connections of the demo account, each keeping `window`
SUBMITs in flight.

* echo: a codec echo, decoding each SUBMIT with gateway.cmpp and answering at once — the floor
  set by Python, the codec and loopback TCP on this machine;
* stub: `smspolicy gateway` with a PolicyService that decides nothing (every recipient
  accepted): the front-end's own cost, SQLite outbox included;
* daemon: the whole path — client -> `smspolicy gateway` -> `smspolicy serve` (shipped rules,
  SQLite counters, as shipped) -> SQLite outbox -> SUBMIT_RESP;
* daemon-none: the same with `smspolicy serve --counters none`: front-end + transport + rules,
  without the counter store;
* paced: the "daemon" row's processes at an offered load of `--rate` submits/s (default 3,000,
  issue 5's figure) spread over the connections, still at most `window` in flight each; a
  SUBMIT due while its connection's window is full waits, and every latency is counted from the
  moment the SUBMIT was due, not from when it could be sent (no coordinated omission). The
  closed-loop rows keep every window full, so their latency is window x connections / rate by
  Little's law (64 in flight at 3,000/s is 21 ms on average whatever the software): p99 at a
  given rate is what this row measures; "behind" is how many SUBMITs were due before their
  window had room;
* redis-1, redis-2 (not in the default set): the "daemon" row with Redis counters (a private
  redis-server), through one daemon, and through two daemons sharing it, the front-end's
  `policy_target` naming both (`ipv4:A,B`, calls spread round robin): what a second daemon
  brings to one front-end on this machine;
* chain (issue 8, benchmark 3): the product end to end — client -> front-end -> daemon (as
  shipped) -> outbox -> `smspolicy forward` -> `smspolicy simulate-upstream` (report delay
  --report-delay, default 0) -> upstream report -> forwarder -> store -> DELIVER status report
  at the client, which acknowledges it. The figure is accepted messages per second whose final
  report reached the client (reports received in the measured seconds), with the submit ->
  report latency; "unreported" counts messages accepted in the measured seconds whose report had
  not come when the load stopped and reports then stopped coming for `--drain` seconds (or 120 s
  passed): 0 expected, nothing accepted is lost; "drained" is how long the backlog took. The
  rules copy of this row sets ch-cmcc's `rate` (500/s as shipped, a per-carrier contract
  setting) to 0 so that the software, not the contract, is measured.

The ratio to the echo server is the figure; each line also shows the CPU each process used
(% of one core) while it was measured, and the 1-minute load average at its end. With --runs N
the rows are measured N times, interleaved, and the median run (by rate) of each is shown.

bench/__main__.py calls `run_bench(...)` (signature below), which returns the rows as dicts.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import itertools
import os
import re
import shutil
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
    decode_connect, encode, parse_report, timestamp_now,
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
    """One customer connection keeping `window` SUBMITs in flight. With `reports`, it also
    times each accepted message until its final status report arrives."""

    numbers = itertools.count()

    def __init__(self, window: int, run: "Run", interval: float = 0.0):
        self.window, self.run = window, run
        self.buf, self.sent, self.seq = bytearray(), {}, itertools.count(2)
        self.logged_in = asyncio.get_running_loop().create_future()
        self.interval = interval          # > 0: paced, one SUBMIT due every `interval` seconds
        self.due: collections.deque[float] = collections.deque()   # due while the window was full

    def connection_made(self, transport):
        self.transport = transport

    def login(self, offset: int) -> None:
        now = datetime.fromtimestamp(time.time() + offset, ZoneInfo("Asia/Shanghai"))
        ts = timestamp_now(now)
        self.transport.write(encode(Connect(1, ACCOUNT, authenticator_source(ACCOUNT, SECRET, ts), V21, ts), V21))

    def start(self) -> None:
        if self.interval:
            self.pacer = asyncio.ensure_future(self.pace())
            return
        for _ in range(self.window):
            self.submit()

    async def pace(self) -> None:
        """Offer one SUBMIT every `interval` seconds until the run stops, whatever the answers
        do; those due while the window is full queue up and keep their due time."""
        run, clock = self.run, time.perf_counter
        due = clock()
        while due < run.stop_at:
            now = clock()
            while due <= now and due < run.stop_at:
                if len(self.sent) < self.window:
                    self.submit(due)
                else:
                    self.due.append(due)
                    if run.measuring:
                        run.behind += 1
                due += self.interval
            await asyncio.sleep(max(0.0, due - clock()))

    def submit(self, due: float | None = None) -> None:
        n = next(self.numbers)
        seq = next(self.seq)
        packet = Submit(seq, registered_delivery=1, msg_fmt=8, msg_src=ACCOUNT, src_id=SRC,
                        dest_terminal_ids=(f"139{12300000 + n % 100000:08d}",),
                        msg_content=TEXT.format(n % 1000000).encode("utf-16-be"))
        self.sent[seq] = time.perf_counter() if due is None else due
        self.transport.write(encode(packet, V21))

    def data_received(self, data):
        self.buf += data
        buf, pos, run = self.buf, 0, self.run
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
                now = time.perf_counter()
                started = self.sent.pop(seq)
                if run.measuring:
                    run.latencies.append(now - started)
                    run.results[resp.result] += 1
                if run.reports and resp.result == 0:
                    run.accepted[resp.msg_id] = (started, run.measuring)
                if self.interval:
                    if self.due:
                        self.submit(self.due.popleft())
                elif now < run.stop_at:
                    self.submit()
            elif cmd == 0x00000005:  # a status report: acknowledge it as a customer would
                deliver = decode(frame, V21)
                self.transport.write(struct.pack(">IIIQB", 21, 0x80000005, seq, deliver.msg_id, 0))
                if run.reports and deliver.registered_delivery == 1:
                    run.report(parse_report(deliver, V21))
            elif cmd == 0x00000008:
                self.transport.write(struct.pack(">IIIB", 13, 0x80000008, seq, 0))
        del buf[:pos]


class Run:
    """What one measurement collects, shared by its connections."""

    def __init__(self, reports: bool, stop_at: float):
        self.reports, self.stop_at, self.measuring = reports, stop_at, False
        self.latencies: list[float] = []
        self.results: Counter = Counter()
        self.accepted: dict[int, tuple[float, bool]] = {}   # Msg_Id -> (sent, in the window)
        self.report_latencies: list[float] = []
        self.stats: Counter = Counter()
        self.unknown_reports = 0
        self.behind = 0   # paced: SUBMITs due while their connection's window was full

    def report(self, rep) -> None:
        entry = self.accepted.pop(rep.msg_id, None)
        if entry is None:
            self.unknown_reports += 1   # a report of an earlier run, or a duplicate
            return
        if self.measuring:
            self.report_latencies.append(time.perf_counter() - entry[0])
            self.stats[rep.stat] += 1


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    values.sort()
    return statistics.median(values) * 1000, values[max(0, int(len(values) * 0.99) - 1)] * 1000


async def measure(port: int, connections: int, window: int, seconds: float, warmup: float = 1.0,
                  reports: bool = False, drain: float = 0.5, drain_max: float = 120.0,
                  rate: float = 0.0) -> dict:
    """Closed loop (every window kept full), or with `rate` > 0 an offered load of `rate`
    SUBMITs/s over all connections (see the paced row in the module doc)."""
    loop = asyncio.get_running_loop()
    run = Run(reports, time.perf_counter() + warmup + seconds)
    interval = connections / rate if rate > 0 else 0.0
    conns = []
    for i in range(connections):
        _, proto = await loop.create_connection(lambda: Load(window, run, interval), "127.0.0.1", port)
        proto.login(offset=i + int(time.time()) % 7 * 10)
        status = await asyncio.wait_for(proto.logged_in, 10)
        if status != 0:
            raise SystemExit(f"login refused with status {status}")
        conns.append(proto)
    gc.disable()  # the load generator's own collector pauses would show up as latency
    for c in conns:
        c.start()
    await asyncio.sleep(warmup)
    run.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    run.measuring = False
    # the reports still owed for what was accepted in the window: wait while they keep coming
    # (a backlog draining), stop once none came for `drain` seconds (stalled: lost or stuck)
    # or after drain_max
    drain_started = last = time.perf_counter()
    owed = sum(1 for _, in_window in run.accepted.values() if in_window)
    while owed and time.perf_counter() - drain_started < drain_max:
        await asyncio.sleep(0.05)
        left = sum(1 for _, in_window in run.accepted.values() if in_window)
        if left < owed:
            owed, last = left, time.perf_counter()
        elif time.perf_counter() - last > drain:
            break
    unreported, drained = owed, time.perf_counter() - drain_started
    if not reports:
        # the SUBMIT_RESPs still in flight (and, paced, the queued ones), before closing
        deadline = time.perf_counter() + (10.0 if interval else 0.5)
        await asyncio.sleep(0.5)
        while interval and any(c.sent or c.due for c in conns) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
    for c in conns:
        c.transport.close()
    gc.enable()
    p50, p99 = _percentiles(run.latencies)
    out = {"submits": len(run.latencies), "submit_rate": len(run.latencies) / elapsed,
           "rate": len(run.latencies) / elapsed, "p50_ms": p50, "p99_ms": p99,
           "results": dict(run.results)}
    if interval:
        out.update(offered=rate, behind=run.behind)
    if reports:
        n = len(run.report_latencies)
        rp50, rp99 = _percentiles(run.report_latencies)
        # the figure of the chain: final reports received per second, and their latency
        out.update(rate=n / elapsed, reports=n, p50_ms=rp50, p99_ms=rp99,
                   submit_p50_ms=p50, submit_p99_ms=p99, stats=dict(run.stats),
                   unreported=unreported, drained_s=drained)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured(port: int, pids: dict[str, int], connections: int, window: int,
                 seconds: float, **kw) -> dict:
    """measure() plus the CPU each process used meanwhile, in % of one core, and the load."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    result = asyncio.run(measure(port, connections, window, seconds, **kw))
    wall = time.perf_counter() - started
    result["cpu"] = {name: 100 * (cpu_seconds(pid) - before[name]) / wall
                     for name, pid in pids.items()}
    result["load1"] = os.getloadavg()[0]
    return result


LABELS = {
    "echo": "codec echo                       ",
    "stub": "front-end + stub daemon          ",
    "daemon": "front-end + policy daemon        ",
    "daemon-none": "front-end + daemon, counters none",
    "paced": "front-end + policy daemon, paced ",
    "chain": "chain to final report            ",
    "redis-1": "front-end + 1 Redis daemon       ",
    "redis-2": "front-end + 2 Redis daemons      ",
}
ALL_ROWS = tuple(LABELS)
ROWS = tuple(r for r in ALL_ROWS if not r.startswith("redis-"))   # the default set


def show(row: dict) -> None:
    cpu = "  ".join(f"{name} {pct:.0f}%" for name, pct in row["cpu"].items())
    unit = "reports/s" if row["row"] == "chain" else "submits/s"
    line = (f"{LABELS[row['row']]}: {row['rate']:8.0f} {unit}  p50 {row['p50_ms']:7.2f} ms"
            f"  p99 {row['p99_ms']:7.2f} ms")
    if "offered" in row:
        line += f"  (offered {row['offered']:.0f}/s, behind {row['behind']})"
    if row["row"] == "chain":
        line += (f"  (submits {row['submit_rate']:.0f}/s, p99 {row['submit_p99_ms']:.1f} ms;"
                 f" stats {row['stats']}; unreported {row['unreported']},"
                 f" backlog drained in {row['drained_s']:.1f} s)")
    print(f"{line}  results {row['results']}  cpu: {cpu}  load {row['load1']:.2f}", flush=True)


def wait_line(proc: subprocess.Popen, log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"{proc.args} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def _chain_rules(target: Path, sim_port: int, http_port: int) -> Path:
    """A copy of the shipped rules whose CMPP channels point at the simulator on `sim_port`,
    with ch-cmcc (every number the load sends to) unthrottled."""
    from tests.support.procs import SHIPPED_RULES
    shutil.copytree(SHIPPED_RULES, target, symlinks=True)
    path = target / "channels.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("port: 7891", f"port: {sim_port}")
    text = text.replace("http://127.0.0.1:7892/", f"http://127.0.0.1:{http_port}/")
    text, n = re.subn(r"(  - id: ch-cmcc\n(?:    .*\n)*?    rate: )500\b", r"\g<1>0", text)
    if n != 1:
        raise SystemExit("the shipped channels.yaml changed shape (ch-cmcc rate); adapt "
                         "bench/frontend_e2e.py _chain_rules")
    path.write_text(text, encoding="utf-8")
    return target


def run_bench(seconds: float = 10, connections: int = 4, window: int = 16,
              rows: tuple[str, ...] = ROWS, runs: int = 1, policy: str | None = None,
              report_delay: float = 0.0, drain: float = 10.0, verbose: bool = True,
              rate: float = 3000.0) -> list[dict]:
    """Measure `rows` (names of ROWS) `runs` times, interleaved; return one dict per row (the
    median run by rate): row, rate (submits/s; for chain, final reports/s), p50_ms, p99_ms,
    results, cpu, load1, ratio (rate / echo rate, when echo was measured), runs (every run),
    and for chain submit_rate, submit_p50_ms, submit_p99_ms, stats, unreported. `policy`: a
    running daemon to use for the "daemon" row instead of starting one."""
    from tests.support.procs import DaemonProc, free_port
    unknown = set(rows) - set(ALL_ROWS)
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)}; known: {', '.join(ALL_ROWS)}")
    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="frontend_e2e_"))
    procs: list[subprocess.Popen] = []
    daemons: list = []

    def spawn(name: str, argv: list[str], ready: str, env: dict | None = None) -> subprocess.Popen:
        log = work / f"{name}.log"
        proc = subprocess.Popen([sys.executable, *argv], cwd=repo, stdout=open(log, "wb"),
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        procs.append(proc)
        wait_line(proc, log, ready)
        return proc

    def gateway(name: str, target: str, data: Path | None = None) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = spawn(name, ["-m", "policy", "gateway", "--listen", f"127.0.0.1:{port}",
                            "--policy", target, "--data", str(data or work / name),
                            "--log-level", "WARNING"], "CMPP gateway listening")
        return proc, port

    def daemon(name: str, **kw) -> tuple[str, int]:
        d = DaemonProc(work / name, **kw)
        daemons.append(d)
        return d.target, d.proc.popen.pid

    me = os.getpid()
    plans: dict[str, tuple] = {}   # row -> (port, pids, measure kwargs)
    try:
        if "echo" in rows:
            port = free_port()
            echo = spawn("echo", [__file__, "--echo", str(port)], "echo ready")
            plans["echo"] = (port, {"echo": echo.pid, "client": me}, {})
        if "stub" in rows:
            stub_port = free_port()
            stub = spawn("stub", [__file__, "--stub", str(stub_port)], "stub ready")
            gw, port = gateway("gateway-stub", f"127.0.0.1:{stub_port}")
            plans["stub"] = (port, {"gateway": gw.pid, "stub": stub.pid, "client": me}, {})
        if "daemon" in rows or "paced" in rows:
            pids = {"client": me}
            if policy:
                target = policy
            else:
                target, pids["daemon"] = daemon("daemon")
            gw, port = gateway("gateway", target)
            plans["daemon"] = (port, {"gateway": gw.pid, **pids}, {})
            # the same processes at an offered rate
            plans["paced"] = (port, {"gateway": gw.pid, **pids}, {"rate": rate})
        if "daemon-none" in rows:
            target, pid = daemon("daemon-none", extra=["--counters", "none"])
            gw, port = gateway("gateway-none", target)
            plans["daemon-none"] = (port, {"gateway": gw.pid, "daemon": pid, "client": me}, {})
        if "redis-1" in rows or "redis-2" in rows:
            from bench.counters_micro import start_redis   # (run as a script too)
            redis_proc, url = start_redis(str(work))
            if redis_proc is None:
                raise ValueError("the redis-1 and redis-2 rows need redis-server on PATH")
            procs.append(redis_proc)
            for n in (1, 2):
                if f"redis-{n}" not in rows:
                    continue
                db = url.rsplit("/", 1)[0] + f"/{n}"   # each row its own counters
                started = [daemon(f"redis-{n}-{k}", extra=["--counters", "redis", "--redis-url", db,
                                                           "--daemon-id", f"d{k}"]) for k in range(n)]
                target = started[0][0] if n == 1 else "ipv4:" + ",".join(t for t, _ in started)
                gw, port = gateway(f"gateway-redis-{n}", target)
                plans[f"redis-{n}"] = (port, {"gateway": gw.pid, "client": me,
                                              **{f"daemon{k}": pid for k, (_, pid) in enumerate(started)}}, {})
        if "chain" in rows:
            sim_port, http_port = free_port(), free_port()
            rules = _chain_rules(work / "chain-rules", sim_port, http_port)
            sim = spawn("simulator", ["-m", "policy", "simulate-upstream", "--rules", str(rules),
                                      "--listen", f"127.0.0.1:{sim_port}", "--report-delay",
                                      str(report_delay), "--log-level", "WARNING"],
                        "upstream simulator: CMPP")
            target, pid = daemon("chain-daemon", rules_dir=rules)
            data = work / "chain-var"
            gw, port = gateway("gateway-chain", target, data)
            fwd = spawn("forwarder", ["-m", "policy", "forward", "--rules", str(rules), "--data",
                                      str(data), "--log-level", "WARNING"], "forwarder: store")
            plans["chain"] = (port, {"gateway": gw.pid, "daemon": pid, "forwarder": fwd.pid,
                                     "simulator": sim.pid, "client": me},
                              {"reports": True, "warmup": 3.0, "drain": drain})
        if verbose:
            print(f"load: {connections} connections x window {window}, {seconds:g} s each, "
                  f"{runs} run(s)", flush=True)
        measured: dict[str, list[dict]] = {r: [] for r in rows}
        for i in range(runs):
            for r in rows:
                port, pids, kw = plans[r]
                res = run_measured(port, pids, connections, window, seconds, **kw)
                res["row"] = r
                measured[r].append(res)
                if verbose and runs > 1:
                    print(f"  run {i + 1}: ", end="")
                    show(res)
        out = []
        for r in rows:
            by_rate = sorted(measured[r], key=lambda x: x["rate"])
            row = dict(by_rate[len(by_rate) // 2], runs=measured[r])
            out.append(row)
        echo_rate = next((x["rate"] for x in out if x["row"] == "echo"), None)
        for row in out:
            row["ratio"] = row["rate"] / echo_rate if echo_rate else None
        if verbose:
            for row in out:
                show(row)
            echo_p99 = next((x["p99_ms"] for x in out if x["row"] == "echo"), None)
            for row in out:
                if row["row"] != "echo" and echo_rate:
                    print(f"ratio {LABELS[row['row']].strip()} / echo: {row['ratio']:.2f} of the "
                          f"throughput, p99 x{row['p99_ms'] / echo_p99:.1f}")
        return out
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for d in daemons:
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--rows", default=",".join(ROWS),
                    help=f"comma-separated, of {', '.join(ALL_ROWS)} (default: all but the redis rows)")
    ap.add_argument("--report-delay", type=float, default=0.0,
                    help="the simulator's delay before each upstream report (chain row)")
    ap.add_argument("--drain", type=float, default=10.0,
                    help="after the chain's load, give up on the reports still owed once none "
                         "came for this many seconds")
    ap.add_argument("--rate", type=float, default=3000.0,
                    help="offered submits/s of the paced row, over all connections")
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
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    try:
        run_bench(args.seconds, args.connections, args.window, rows, args.runs, args.policy,
                  args.report_delay, args.drain, rate=args.rate)
    except ValueError as e:
        raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
