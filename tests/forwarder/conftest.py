import pytest

from tests.forwarder.support import ForwarderProc, dead_port, write_rules
from tests.simulator.support import SimulatorProc

ACCOUNTS = "SIM001:pw1,SIM002:pw2,SIM003:pw3"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    s = SimulatorProc(tmp_path_factory.mktemp("upstream"), accounts=ACCOUNTS, http=True,
                      extra=["--report-delay", "0.1", "--seed", "1", "--version", "0x30"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def fwd(tmp_path_factory, upstream):
    work = tmp_path_factory.mktemp("forwarder")
    rules = write_rules(work / "rules", upstream, dead_port())
    f = ForwarderProc(work, rules, work / "var")
    upstream.wait(lambda: len(upstream.control("stats")["connections"]) == 3, what="3 logins")
    yield f
    f.stop()
