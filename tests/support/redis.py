"""A private redis-server for tests: real server, free loopback port, temp dir."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager

import pytest
import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis_server(workdir) -> tuple[subprocess.Popen, str]:
    """A private redis-server on a free loopback port, answering PING; skips without the binary."""
    exe = shutil.which("redis-server")
    if exe is None:
        why = "redis-server is not on PATH (apt-get install redis-server); Redis backend not tested"
        if os.environ.get("TESTS_NEED_REDIS"):  # CI installs it: a skip there would hide a gap
            pytest.fail(why)
        pytest.skip(why)
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return proc, url
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"redis-server on port {port} did not answer PING (exit code {proc.poll()})")
                time.sleep(0.02)
    finally:
        client.close()


@contextmanager
def daemons_on_redis(workdir, names=("a", "b"), rules_dir=None):
    """Policy daemons sharing a private redis-server, each with its own data folder and
    decision log (daemon id = its name), on one copy of the shipped rules unless `rules_dir`:
    yields (the redis-server process, [DaemonProc]); stops them all afterwards."""
    from .procs import DaemonProc, copy_rules
    proc, url = start_redis_server(workdir)
    daemons = []
    try:
        rules = rules_dir or copy_rules(workdir)
        for name in names:
            daemons.append(DaemonProc(workdir / name, rules_dir=rules,
                                      extra=["--counters", "redis", "--redis-url", url, "--daemon-id", name]))
        yield proc, daemons
    finally:
        for d in daemons:
            d.stop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
