"""Real processes on loopback: the policy daemon (and later the front-end), each in its own data dir."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RULES = REPO / "rules"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_rules(dest: Path) -> Path:
    target = dest / "rules"
    shutil.copytree(SHIPPED_RULES, target, symlinks=True)
    return target


class Proc:
    def __init__(self, args: list[str], log_path: Path, env: dict | None = None):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen([sys.executable, "-m", "policy", *args], cwd=REPO,
                                      stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                      start_new_session=True)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def wait_grpc_ready(target: str, proc: Proc, timeout: float = 30.0) -> grpc.Channel:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    channel = grpc.insecure_channel(target)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError(f"daemon exited early:\n{proc.output()}")
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                return channel
        except grpc.RpcError:
            time.sleep(0.1)
    raise RuntimeError(f"daemon not ready after {timeout}s:\n{proc.output()}")


class DaemonProc:
    """`smspolicy serve` on a free port with its own rules copy and data dir."""

    def __init__(self, workdir: Path, rules_dir: Path | None = None, extra: list[str] | None = None,
                 env: dict | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.rules_dir = rules_dir or copy_rules(workdir)
        self.data_dir = workdir / "var"
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.args = ["serve", "--listen", self.target, "--rules", str(self.rules_dir),
                     "--data", str(self.data_dir), *(extra or [])]
        self.env = {"SMSPOLICY_WATCH_INTERVAL": "0.2", **(env or {})}
        self.start()

    def start(self) -> None:
        self.proc = Proc(self.args, self.workdir / f"daemon-{time.time_ns()}.log", self.env)
        self.channel = wait_grpc_ready(self.target, self.proc)
        from policy.api.v1 import policy_pb2_grpc as pbg
        self.policy = pbg.PolicyServiceStub(self.channel)
        self.admin = pbg.AdminServiceStub(self.channel)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        self.channel.close()
        self.proc.stop()
