"""smspolicy up: the whole product on one machine, as child processes.

    policy daemon  (smspolicy serve)              settings.listen
    upstream SMSC  (smspolicy simulate-upstream)  settings.simulator_listen, plus the HTTP channel
                                                  on the port of the rules' HTTP channel URL
    front-end      (smspolicy gateway)            settings.gateway_listen
    HTTP API       (smspolicy http-api)           settings.http_listen
    forwarder      (smspolicy forward)

Each child logs to <data>/logs/<name>.log. Ctrl-C or SIGTERM stops them all; so does any child
dying (its last log lines are shown). --config is passed to every child.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from ._common import settings_and_policy

NAME = "up"
HELP = "start daemon, front-end, forwarder and upstream simulator together (Ctrl-C stops all)"

_READY_TIMEOUT = 60.0


def add_arguments(p) -> None:
    p.add_argument("--rules", dest="rules_dir", help="rules folder (default ./rules)")
    p.add_argument("--data", dest="data_dir", help="data folder (default ./var)")
    p.add_argument("--no-simulator", action="store_true",
                   help="do not start the upstream simulator (channels point at real gateways)")
    p.add_argument("--simulator-control", default="127.0.0.1:0",
                   help="the simulator's control port (default: an ephemeral port, printed)")
    p.add_argument("--log-level", default="INFO", help="log level of every child")


class Child:
    def __init__(self, name: str, args: list[str], ready: str, prefix: str, log_dir: Path,
                 env: dict):
        # ready: text the child prints once it listens; prefix: its lines worth showing
        self.name, self.ready_text, self.prefix = name, ready, prefix
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self._start = self._log.tell()
        self.popen = subprocess.Popen([sys.executable, "-m", "policy", *args], stdout=self._log,
                                      stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def output(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(self._start)
            return f.read().decode("utf-8", errors="replace")

    def ready(self) -> bool:
        return self.ready_text in self.output()

    def announced(self) -> list[str]:
        """What the child printed about where it listens (its lines before any log line)."""
        return [line for line in self.output().splitlines() if line.startswith(self.prefix)]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        return "\n".join("    " + line for line in self.output().splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()


def _http_channel_listen(policy) -> str:
    """Where the simulator serves the HTTP channel: the first loopback HTTP channel's URL."""
    for channel in policy.channels.values():
        if channel.protocol == "http" and channel.http_url:
            url = urlsplit(channel.http_url)
            if url.hostname in ("127.0.0.1", "localhost") and url.port:
                return f"127.0.0.1:{url.port}"
    return ""


def run(args) -> int:
    loaded = settings_and_policy(args, "up")
    if isinstance(loaded, int):
        return loaded
    settings, policy = loaded
    rules, data = os.path.abspath(settings.rules_dir), os.path.abspath(settings.data_dir)
    log_dir = Path(data) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = [*(["--config", args.config] if args.config else [])]
    level = ["--log-level", args.log_level]
    plan = [("daemon", ["serve", "--listen", settings.listen, "--rules", rules, "--data", data,
                        *level], "policy daemon listening", "policy daemon")]
    if not args.no_simulator:
        http = _http_channel_listen(policy)
        plan.append(("simulator", ["simulate-upstream", "--rules", rules, "--listen",
                                   settings.simulator_listen, "--control", args.simulator_control,
                                   *(["--http-listen", http] if http else []), *level],
                     "upstream simulator: CMPP", "upstream simulator:"))
    plan += [("gateway", ["gateway", "--listen", settings.gateway_listen, "--policy",
                          settings.policy_target, "--data", data, *level], "CMPP gateway listening",
              "CMPP gateway"),
             ("http-api", ["http-api", "--data", data, *level], "HTTP API listening", "HTTP API"),
             ("forwarder", ["forward", "--rules", rules, "--data", data, *level], "forwarder: store",
              "forwarder:")]

    children: list[Child] = []
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        for name, child_args, ready, prefix in plan:
            child = Child(name, [*common, *child_args], ready, prefix, log_dir, env)
            children.append(child)
            deadline = time.monotonic() + _READY_TIMEOUT
            while not stopping and not child.ready():
                if not child.alive() or time.monotonic() > deadline:
                    print(f"smspolicy up: {name} did not start; its log ({child.log_path}):\n"
                          f"{child.tail()}", flush=True)
                    return 1
                time.sleep(0.05)
            if stopping:
                return 0
            for line in child.announced():
                print(f"{name:>9} (pid {child.popen.pid}): {line.strip()}", flush=True)
        print(f"all up; logs in {log_dir}; Ctrl-C stops everything", flush=True)
        while not stopping:
            dead = next((c for c in children if not c.alive()), None)
            if dead:
                print(f"smspolicy up: {dead.name} exited with {dead.popen.returncode}; stopping "
                      f"the others. Its log ({dead.log_path}):\n{dead.tail()}", flush=True)
                code = 1
                break
            time.sleep(0.2)
        return code
    finally:
        # the forwarder first: it finishes its SUBMITs in flight while the others still run
        for child in reversed(children):
            child.stop()
        if children:
            print("stopped", flush=True)
