"""`smspolicy gateway` as a real process on a free port, with its own data dir."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from tests.support.procs import Proc, free_port

# Short timers so the tests of timeouts and resends take seconds; each test overrides what it
# exercises.
TEST_ENV = {
    "SMSPOLICY_POLICY_TIMEOUT": "1.5",
    "SMSPOLICY_REPORT_RESEND": "1.0",
    "SMSPOLICY_RESPONSE_TIMEOUT": "1.0",
    "SMSPOLICY_REASSEMBLY_TIMEOUT": "180",
}


_gateway_ids = itertools.count(1)


class GatewayProc:
    def __init__(self, workdir: Path, policy_target: str, env: dict | None = None,
                 gateway_id: str | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.data_dir = workdir / "gw"
        self.port = free_port()
        self.policy_target = policy_target
        # Front-ends sharing a daemon need distinct ids: request ids are "<gateway id>:<Msg_Id>",
        # and Msg_Ids of two gateways started in the same second coincide, so a shared id would
        # make the daemon replay another gateway's decision. A restart keeps its id.
        self.gateway_id = gateway_id or f"gt{next(_gateway_ids)}"
        self.env = {**TEST_ENV, **(env or {})}
        self.start()

    @property
    def store_path(self) -> Path:
        return self.data_dir / "gateway.db"

    def start(self) -> None:
        self.proc = Proc(["gateway", "--listen", f"127.0.0.1:{self.port}", "--policy",
                          self.policy_target, "--data", str(self.data_dir), "--gateway-id",
                          self.gateway_id, "--log-level", "DEBUG"],
                         self.workdir / f"gateway-{time.time_ns()}.log", self.env)
        deadline = time.time() + 20
        while "CMPP gateway listening" not in self.proc.output():
            if not self.proc.alive():
                raise RuntimeError(f"gateway exited early:\n{self.proc.output()}")
            if time.time() > deadline:
                raise RuntimeError(f"gateway not listening after 20 s:\n{self.proc.output()}")
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture(scope="module")
def gateway(daemon, tmp_path_factory):
    """One front-end per module on the session's daemon (tests must not change its state)."""
    g = GatewayProc(tmp_path_factory.mktemp("gateway"), daemon.target)
    yield g
    g.stop()


def _factory(folder: Path):
    made = []

    def make(policy_target: str, **env) -> GatewayProc:
        g = GatewayProc(folder / f"g{len(made)}", policy_target,
                        {f"SMSPOLICY_{k.upper()}": str(v) for k, v in env.items()})
        made.append(g)
        return g
    return make, made


@pytest.fixture
def make_gateway(tmp_path):
    """Front-ends of a test's own, with settings of its own: make_gateway(target, window=4)
    sets SMSPOLICY_WINDOW=4 for it."""
    make, made = _factory(tmp_path)
    yield make
    for g in made:
        g.stop()


@pytest.fixture(scope="module")
def make_module_gateway(tmp_path_factory):
    """Like make_gateway, for front-ends that serve a whole module."""
    make, made = _factory(tmp_path_factory.mktemp("gateways"))
    yield make
    for g in made:
        g.stop()
