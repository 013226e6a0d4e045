import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import DaemonProc  # noqa: E402
from tests.support.redis import start_redis_server  # noqa: E402


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """One policy daemon on the shipped rules for the whole session (tests must not change it)."""
    d = DaemonProc(tmp_path_factory.mktemp("daemon"))
    yield d
    d.stop()


@pytest.fixture
def fresh_daemon(tmp_path):
    """A daemon of its own, on a copy of the shipped rules the test may edit."""
    d = DaemonProc(tmp_path)
    yield d
    d.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """One private redis-server for the session's store tests (each uses its own key prefix)."""
    proc, url = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)
