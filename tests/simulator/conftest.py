import pytest

from tests.simulator.support import SimulatorProc


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One simulator per test module: accounts SIM001:pw1 and SIM002:pw2, reports after 0.1 s."""
    s = SimulatorProc(tmp_path_factory.mktemp("sim"), http=True,
                      extra=["--report-delay", "0.1", "--seed", "7", "--delivrd-ratio", "0.5"])
    yield s
    s.stop()
