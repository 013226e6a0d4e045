"""gRPC throughput and latency of the policy daemon on loopback, beside a bare grpcio echo server.

    python -m bench.grpc_bench [--quick] [--messages N] [--seconds S] [--workdir DIR]

Processes, all on the reference workload (bench/workload.py), each with its own data folder:
  sqlite   `smspolicy serve` as shipped: SQLite counters, decision log
  redis    `smspolicy serve --counters redis` on a private redis-server
  off      the same Daemon with the pipeline's counter step detached (no counters_backend
           setting turns it off today; see `serve-without-counters` below)
  bare     `off` without the decision log too: rules and facts only, what gRPC costs on top of
           in-process config (a) of pipeline_bench (a diagnostic, no target)
  echo     a bare grpcio server (same worker count) answering every call with a response
           captured from the sqlite daemon, so requests and responses have the same sizes
The client is this process (grpc.aio, one event loop), the same for every server. After a
warm-up pass per server, each repetition measures every server in turn (so a load spike on the
shared machine hits them alike): EvaluateBatch (100 requests per batch, 4 batches in flight)
and EvaluateStream (2 streams), 3 repetitions, medians. Then unary Evaluate paced at 1,000
calls/s for ~10 s (open loop: calls are sent on schedule whatever the answers do) for the echo
server and the sqlite, off and bare daemons, 3 repetitions interleaved: medians of the runs'
p50 / p99 from send to answer.

"decisions/s" counts answered messages (one EvaluateResponse each, 1-3 recipients).

Internal entry points (used by the benchmark to start its servers):
    python -m bench.grpc_bench echo --listen ADDR --responses FILE [--workers N]
    python -m bench.grpc_bench serve-without-counters --listen ADDR --rules DIR --data DIR
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import grpc

REPO = Path(__file__).resolve().parents[1]
BATCH = 100
BATCHES_IN_FLIGHT = 4
STREAMS = 2
UNARY_RATE = 1000
UNARY_IN_FLIGHT = 16   # closed-loop unary: calls outstanding at once
REPS = 3
WORKERS = 8   # the daemon's default (policy/settings.py)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- server processes
class DaemonProcess:
    """One server process on a free loopback port; `start_seconds` is process start to
    health SERVING. kind: sqlite | redis | off | bare | echo."""

    def __init__(self, rules_dir: Path | None, data_dir: Path, kind: str = "sqlite",
                 redis_url: str = "", responses: Path | None = None, timeout: float = 120.0):
        self.kind = kind
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.target = f"127.0.0.1:{free_port()}"
        serve = ["--listen", self.target, "--rules", str(rules_dir), "--data", str(self.data_dir)]
        if kind in ("sqlite", "redis"):
            args = ["-m", "policy", "serve", *serve, "--log-level", "WARNING"]
            if kind == "redis":
                args += ["--counters", "redis", "--redis-url", redis_url]
        elif kind in ("off", "bare"):
            args = ["-m", "bench.grpc_bench", "serve-without-counters", *serve]
            if kind == "bare":
                args.append("--no-decision-log")
        elif kind == "echo":
            args = ["-m", "bench.grpc_bench", "echo", "--listen", self.target, "--responses", str(responses)]
        else:
            raise ValueError(f"unknown server kind {kind!r}")
        self.log_path = self.data_dir / f"{kind}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the server's output for its lifetime
        started = time.perf_counter()
        self.popen = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            self._wait_serving(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started

    def _wait_serving(self, timeout: float) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.popen.returncode}:\n{self.output()}")
            # a fresh channel per try: a channel that failed once waits out its reconnect backoff
            with grpc.insecure_channel(self.target) as ch:
                try:
                    resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} server not SERVING after {timeout:.0f} s:\n{self.output()}")

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM (peak) of the process, in MB (10^6 bytes)."""
        out = {}
        with open(f"/proc/{self.popen.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024 / 1e6
        return out

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_without_counters(argv: list[str]) -> int:
    """The real Daemon with Pipeline.counters set to None: what `counters_backend: none` would
    run. Stands in for that setting in the counters-off comparison until it exists.
    --no-decision-log also detaches the decision log (diagnostic only)."""
    import logging

    from policy.daemon.server import Daemon
    from policy.settings import load_settings
    ap = argparse.ArgumentParser(prog="serve-without-counters")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--rules", dest="rules_dir", required=True)
    ap.add_argument("--data", dest="data_dir", required=True)
    ap.add_argument("--no-decision-log", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    no_log = args.no_decision_log
    del args.no_decision_log
    daemon = Daemon(load_settings(overrides=vars(args)))
    daemon.pipeline.counters = None   # step 4 (and request-id idempotency) skipped
    if no_log:
        daemon.pipeline.decision_log = None   # step 5 skipped; Daemon.stop still closes the log
    daemon.install_signal_handlers()
    daemon.start()
    try:
        daemon.wait()
    finally:
        daemon.stop()
    return 0


def serve_echo(argv: list[str]) -> int:
    """PolicyService answering from a file of captured responses, round robin; no evaluation."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from policy.api.v1 import policy_pb2 as pb
    from policy.api.v1 import policy_pb2_grpc as pb_grpc
    ap = argparse.ArgumentParser(prog="echo")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--responses", required=True, type=Path)
    ap.add_argument("--workers", type=int, default=WORKERS)
    args = ap.parse_args(argv)
    captured = list(pb.EvaluateBatchResponse.FromString(args.responses.read_bytes()).responses)
    batches: dict[int, pb.EvaluateBatchResponse] = {}
    lock = threading.Lock()
    counter = iter(range(1 << 62))

    def next_response() -> pb.EvaluateResponse:
        with lock:
            return captured[next(counter) % len(captured)]

    def batch_of(n: int) -> pb.EvaluateBatchResponse:
        b = batches.get(n)
        if b is None:
            b = batches[n] = pb.EvaluateBatchResponse(
                responses=[captured[i % len(captured)] for i in range(n)])
        return b

    class Echo(pb_grpc.PolicyServiceServicer):
        def Evaluate(self, request, context):
            return next_response()

        def EvaluateBatch(self, request, context):
            return batch_of(len(request.requests))

        def EvaluateStream(self, request_iterator, context):
            for _ in request_iterator:
                yield next_response()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    pb_grpc.add_PolicyServiceServicer_to_server(Echo(), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(args.listen) == 0:
        raise OSError(f"cannot listen on {args.listen}")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    server.stop(1).wait()
    return 0


# ---------------------------------------------------------------------- the client
def to_request(sub, request_id: str):
    from policy.api.v1 import policy_pb2 as pb
    return pb.EvaluateRequest(
        request_id=request_id, account_id=sub.account_id, frontend_id=sub.frontend_id,
        access_mode=pb.ACCESS_MODE_CMPP, src_id=sub.src_id, destinations=sub.destinations,
        content=sub.content, msg_fmt=sub.msg_fmt, fee_code=sub.fee_code,
        registered_delivery=sub.registered_delivery, parts=sub.parts)


def requests_for(subs: list, tag: str) -> list:
    return [to_request(s, f"{tag}-{i}") for i, s in enumerate(subs)]


@dataclass
class Rate:
    messages: int
    recipients: int
    wall: float
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.messages / self.wall


@dataclass
class Latency:
    sent: int
    answered: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False, default_factory=list)

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1e3 if xs else float("nan")

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.seconds


def _channel(target: str):
    return grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])


def _stub(channel):
    from policy.api.v1 import policy_pb2_grpc as pb_grpc
    return pb_grpc.PolicyServiceStub(channel)


def _recipients(reqs) -> int:
    return sum(len(r.destinations) for r in reqs)


async def _batch(target: str, reqs: list, batch: int, in_flight: int) -> Rate:
    from policy.api.v1 import policy_pb2 as pb
    batches = [pb.EvaluateBatchRequest(requests=reqs[i:i + batch]) for i in range(0, len(reqs), batch)]
    async with _channel(target) as ch:
        stub = _stub(ch)
        await ch.channel_ready()
        queue = iter(batches)
        answered = errors = 0

        async def worker():
            nonlocal answered, errors
            for b in queue:
                try:
                    resp = await stub.EvaluateBatch(b, timeout=120)
                    answered += len(resp.responses)
                except grpc.aio.AioRpcError:
                    errors += len(b.requests)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return Rate(answered, _recipients(reqs), time.perf_counter() - t, errors)


async def _stream(target: str, reqs: list, streams: int) -> Rate:
    async with _channel(target) as ch:
        stub = _stub(ch)
        await ch.channel_ready()

        async def one(part: list) -> int:
            call = stub.EvaluateStream(timeout=300)

            async def writer():
                for r in part:
                    await call.write(r)
                await call.done_writing()

            w = asyncio.create_task(writer())
            n = 0
            async for _ in call:
                n += 1
            await w
            return n

        parts = [reqs[k::streams] for k in range(streams)]
        t = time.perf_counter()
        try:
            answered = sum(await asyncio.gather(*(one(p) for p in parts)))
            errors = 0
        except grpc.aio.AioRpcError:
            answered, errors = 0, len(reqs)
        return Rate(answered, _recipients(reqs), time.perf_counter() - t, errors)


async def _unary(target: str, reqs: list, in_flight: int) -> Rate:
    """Closed loop: `in_flight` unary Evaluate calls outstanding at all times, as fast as answered."""
    async with _channel(target) as ch:
        stub = _stub(ch)
        await ch.channel_ready()
        queue = iter(reqs)
        answered = errors = 0

        async def worker():
            nonlocal answered, errors
            for r in queue:
                try:
                    await stub.Evaluate(r, timeout=60)
                    answered += 1
                except grpc.aio.AioRpcError:
                    errors += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return Rate(answered, _recipients(reqs), time.perf_counter() - t, errors)


def unary_rate(target: str, reqs: list, in_flight: int = UNARY_IN_FLIGHT) -> Rate:
    return asyncio.run(_unary(target, reqs, in_flight))


async def _paced(target: str, reqs: list, rate: float) -> Latency:
    """Open loop: call k is sent at t0 + k/rate however long earlier calls take."""
    async with _channel(target) as ch:
        stub = _stub(ch)
        await ch.channel_ready()
        lat: list[float] = []
        errors = 0

        async def one(req):
            nonlocal errors
            t = time.perf_counter()
            try:
                await stub.Evaluate(req, timeout=10)
                lat.append(time.perf_counter() - t)
            except grpc.aio.AioRpcError:
                errors += 1

        tasks = []
        t0 = time.perf_counter()
        for k, req in enumerate(reqs):
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(req)))
        sent_over = time.perf_counter() - t0
        await asyncio.gather(*tasks)
        return Latency(len(reqs), len(lat), errors, sent_over, lat)


def batch_rate(target: str, reqs: list, batch: int = BATCH, in_flight: int = BATCHES_IN_FLIGHT) -> Rate:
    return asyncio.run(_batch(target, reqs, batch, in_flight))


def spread_batch_rate(targets: list[str], reqs: list, batch: int = BATCH,
                      in_flight: int = BATCHES_IN_FLIGHT) -> Rate:
    """batch_rate over several daemons at once: `reqs` cut into one contiguous part per target,
    `in_flight` calls in all (in_flight / len(targets) per target), one rate over the whole."""
    async def run() -> Rate:
        size = -(-len(reqs) // len(targets))
        t = time.perf_counter()
        rates = await asyncio.gather(*(_batch(target, reqs[k * size:(k + 1) * size], batch,
                                              max(1, in_flight // len(targets)))
                                       for k, target in enumerate(targets)))
        return Rate(sum(r.messages for r in rates), sum(r.recipients for r in rates),
                    time.perf_counter() - t, sum(r.errors for r in rates))
    return asyncio.run(run())


def stream_rate(target: str, reqs: list, streams: int = STREAMS) -> Rate:
    return asyncio.run(_stream(target, reqs, streams))


def paced_unary(target: str, reqs: list, rate: float = UNARY_RATE) -> Latency:
    return asyncio.run(_paced(target, reqs, rate))


def capture_responses(target: str, reqs: list, path: Path) -> int:
    """Saves the daemon's answers to `reqs` (one EvaluateBatch) for the echo server; returns
    their mean serialized size in bytes."""
    from policy.api.v1 import policy_pb2 as pb
    from policy.api.v1 import policy_pb2_grpc as pb_grpc
    with grpc.insecure_channel(target) as ch:
        resp = pb_grpc.PolicyServiceStub(ch).EvaluateBatch(pb.EvaluateBatchRequest(requests=reqs), timeout=60)
    path.write_bytes(resp.SerializeToString())
    return round(sum(r.ByteSize() for r in resp.responses) / len(resp.responses))


# ---------------------------------------------------------------------- the benchmark
def measure(rules_dir: Path, subs: list, workdir: Path, unary_seconds: float, reps: int = REPS,
            unary_reps: int = REPS, redis_url: str = "", log=print) -> dict:
    """Every server's batch and stream rates and unary latencies (lists of Rate / Latency, one
    per repetition), and the daemons' memory after the runs."""
    kinds = ["sqlite", "off", "bare"] + (["redis"] if redis_url else [])
    servers: dict[str, DaemonProcess] = {}
    out: dict = {"batch": {}, "stream": {}, "unary": {}, "memory": {}, "start": {}}
    try:
        for kind in kinds:
            servers[kind] = DaemonProcess(rules_dir, workdir / f"grpc-{kind}", kind, redis_url=redis_url)
            out["start"][kind] = servers[kind].start_seconds
            log(f"  {kind} daemon SERVING after {servers[kind].start_seconds:.2f} s")
            # warm-up: every segment of the stream seen once (validity, carrier and route caches)
            batch_rate(servers[kind].target, requests_for(subs, f"warm-{kind}"))
        responses = workdir / "echo-responses.bin"
        size = capture_responses(servers["sqlite"].target, requests_for(subs[:BATCH], "capture"), responses)
        out["response_bytes"] = size
        servers["echo"] = DaemonProcess(None, workdir / "grpc-echo", "echo", responses=responses)
        batch_rate(servers["echo"].target, requests_for(subs, "warm-echo"))
        order = ["echo", *kinds]
        out["unary-max"] = {}
        # closed-loop unary calls one at a time per call: a fifth of the stream keeps the run short
        for form, fn, part in (("batch", batch_rate, subs), ("stream", stream_rate, subs),
                               ("unary-max", unary_rate, subs[:max(len(subs) // 5, 200)])):
            for kind in order:
                out[form][kind] = []
            for rep in range(reps):
                for kind in order:
                    r = fn(servers[kind].target, requests_for(part, f"{form}-{kind}-{rep}"))
                    out[form][kind].append(r)
                    log(f"  {form:<6} {kind:<6} run {rep + 1}: {r.rate:8.0f} decisions/s "
                        f"({r.recipients / r.wall:8.0f} recipients/s){f', {r.errors} errors' if r.errors else ''}")
        n = int(UNARY_RATE * unary_seconds)
        paced = (subs * (n // len(subs) + 1))[:n]
        latency_kinds = ("echo", "sqlite", "off", "bare")
        for kind in latency_kinds:
            out["unary"][kind] = []
            paced_unary(servers[kind].target, requests_for(paced[:UNARY_RATE], f"uwarm-{kind}"))
        for rep in range(unary_reps):
            for kind in latency_kinds:
                lat = paced_unary(servers[kind].target, requests_for(paced, f"unary-{kind}-{rep}"))
                out["unary"][kind].append(lat)
                log(f"  unary  {kind:<6} run {rep + 1}: {lat.achieved_rate:6.0f} calls/s sent, "
                    f"p50 {lat.pct(50):6.2f} ms, p99 {lat.pct(99):6.2f} ms, max {lat.pct(100):7.2f} ms, "
                    f"{lat.errors} errors")
        for kind in kinds:
            out["memory"][kind] = servers[kind].memory()
    finally:
        for s in servers.values():
            s.stop()
    return out


def median(runs: list) -> float:
    return statistics.median(r.rate for r in runs)


def median_pct(runs: list, p: float) -> float:
    return statistics.median(r.pct(p) for r in runs)


def start_redis(workdir: Path):
    """(process, url) of a private redis-server, or (None, '') when none is installed."""
    from .counters_micro import start_redis as start
    proc, url = start(str(workdir))
    return proc, url or ""


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["echo"]:
        return serve_echo(argv[1:])
    if argv[:1] == ["serve-without-counters"]:
        return serve_without_counters(argv[1:])
    from .workload import FULL, QUICK, Workload
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--messages", type=int, default=0, help="messages per batch/stream run (default 10000, quick 1000)")
    ap.add_argument("--seconds", type=float, default=0, help="paced unary run length (default 10, quick 2)")
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args(argv)
    n = args.messages or (1000 if args.quick else 10_000)
    seconds = args.seconds or (2 if args.quick else 10)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="smspolicy-grpc-bench-"))
    redis_proc = None
    try:
        w = Workload(QUICK if args.quick else FULL)
        rules = w.write(workdir / "rules")
        subs = list(w.messages(n))
        redis_proc, url = start_redis(workdir)
        res = measure(rules, subs, workdir, seconds, unary_reps=1 if args.quick else REPS, redis_url=url)
        for form in ("batch", "stream"):
            base = median(res[form]["echo"])
            off = median(res[form]["off"])
            for kind, runs in res[form].items():
                r = median(runs)
                print(f"{form:<6} {kind:<6} {r:8.0f} decisions/s  vs echo {r / base:5.2f}  vs off {r / off:5.2f}")
        for kind, lats in res["unary"].items():
            print(f"unary  {kind:<6} p50 {median_pct(lats, 50):6.2f} ms  p99 {median_pct(lats, 99):6.2f} ms")
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
