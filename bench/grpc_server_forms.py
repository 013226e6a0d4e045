"""What a unary call costs grpcio's Python servers alone: the daemon's sync server (thread pool)
against grpc.aio, on an echo that does no work, interleaved.

    .venv/bin/python -m bench.grpc_server_forms [--calls 5000] [--runs 3] [--in-flight 16,1]

Servers, each its own process on a free loopback port, answering every Evaluate with one fixed
EvaluateResponse (2 recipients):
  sync-8 / sync-2 / sync-1  grpc.server with a ThreadPoolExecutor of 8 (the daemon's default
                            `workers`), 2 or 1 threads
  aio                       grpc.aio.server, an `async def` handler on its event loop
  aio-pool                  grpc.aio.server, the same sync handler run in a pool of 8 threads
                            (what the daemon's blocking pipeline would need under grpc.aio)
The client is this process (grpc.aio, closed loop: `in flight` calls outstanding at all times).
Per server and run: calls/s, and the server's CPU per call from /proc/PID/stat around the run.
Medians of --runs; the servers' order alternates between runs.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
SERVERS = ("sync-8", "sync-2", "sync-1", "aio", "aio-pool")


def _response():
    from policy.api.v1 import policy_pb2 as pb
    return pb.EvaluateResponse(
        decision_id="0" * 26, rules_version="0" * 16,
        recipients=[pb.RecipientDecision(destination="13800138000", channel_id="ch01")] * 2)


def serve(form: str, port: int) -> None:
    from policy.api.v1 import policy_pb2_grpc as pb_grpc
    response = _response()
    address = f"127.0.0.1:{port}"

    class Echo(pb_grpc.PolicyServiceServicer):
        def Evaluate(self, request, context):
            return response

    class AsyncEcho(pb_grpc.PolicyServiceServicer):
        async def Evaluate(self, request, context):
            return response

    if form.startswith("sync-"):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=int(form[5:])))
        pb_grpc.add_PolicyServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(address)
        server.start()
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        stopped.wait()
        return

    async def main() -> None:
        if form == "aio":
            server = grpc.aio.server()
            pb_grpc.add_PolicyServiceServicer_to_server(AsyncEcho(), server)
        else:
            server = grpc.aio.server(futures.ThreadPoolExecutor(max_workers=8))
            pb_grpc.add_PolicyServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(address)
        await server.start()
        await server.wait_for_termination()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--in-flight", default="16,1", help="comma-separated closed-loop depths")
    ap.add_argument("--servers", default=",".join(SERVERS))
    args = ap.parse_args(argv)
    from policy.api.v1 import policy_pb2 as pb

    from .frontend_e2e import cpu_seconds
    from .grpc_bench import free_port, unary_rate
    reqs = [pb.EvaluateRequest(request_id=f"r{i}", account_id="900001", destinations=["13800138000"],
                               content="您的验证码是123456".encode("utf-16-be"), msg_fmt=8)
            for i in range(args.calls)]
    forms = args.servers.split(",")
    procs = {}
    try:
        for form in forms:
            port = free_port()
            procs[form] = (subprocess.Popen([sys.executable, "-m", "bench.grpc_server_forms", "serve", form,
                                             str(port)], cwd=REPO), f"127.0.0.1:{port}")
        time.sleep(2.0)
        for form, (_, target) in procs.items():
            unary_rate(target, reqs[:500])   # connected and warm
        for depth in (int(d) for d in args.in_flight.split(",")):
            results: dict[str, list[tuple[float, float]]] = {f: [] for f in forms}
            for run in range(args.runs):
                for form in (forms if run % 2 == 0 else forms[::-1]):
                    proc, target = procs[form]
                    c0 = cpu_seconds(proc.pid)
                    r = unary_rate(target, reqs, in_flight=depth)
                    cpu = (cpu_seconds(proc.pid) - c0) / r.messages * 1e6
                    results[form].append((r.rate, cpu))
                    print(f"in flight {depth:>2} run {run + 1} {form:<8} {r.rate:7.0f} calls/s  "
                          f"server CPU {cpu:5.0f} µs/call{f'  {r.errors} errors' if r.errors else ''}", flush=True)
            for form, runs in results.items():
                print(f"in flight {depth:>2} median {form:<8} {statistics.median(x for x, _ in runs):7.0f} calls/s  "
                      f"server CPU {statistics.median(c for _, c in runs):5.0f} µs/call")
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
