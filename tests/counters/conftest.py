"""Counter-store fixtures: every store test runs against SQLite (exclusive mode, the default, and
shared mode) and against a real redis-server.

The Redis server is this session's own process on a free loopback port in a temp dir, killed at
the end. Without `redis-server` on PATH the Redis half skips and says why (CI installs it).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from policy.counters import ExclusiveSqliteCounterStore, RedisCounterStore, SqliteCounterStore
from tests.support.redis import start_redis_server


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own, for tests that kill it: returns (process, url)."""
    proc, url = start_redis_server(tmp_path)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@dataclass(frozen=True)
class StoreSpec:
    """Where a store lives, picklable so spawned processes can open the same one."""
    backend: str         # sqlite (shared mode), sqlite-exclusive (-fold: folds in a child process), redis
    location: str        # SQLite file or Redis URL
    prefix: str = ""

    def open(self):
        if self.backend == "sqlite":
            return SqliteCounterStore(self.location)
        if self.backend.startswith("sqlite-exclusive"):
            return ExclusiveSqliteCounterStore(self.location, fold_process=self.backend.endswith("-fold"))
        return RedisCounterStore(self.location, prefix=self.prefix)


def _spec(request, tmp_path) -> StoreSpec:
    if request.param.startswith("sqlite"):
        return StoreSpec(request.param, str(tmp_path / "counters.db"))
    url = request.getfixturevalue("redis_url")
    return StoreSpec("redis", url, f"t{uuid.uuid4().hex[:12]}:")


@pytest.fixture(params=["sqlite-exclusive", "sqlite-exclusive-fold", "sqlite",
                        pytest.param("redis", marks=pytest.mark.redis)])
def store_spec(request, tmp_path) -> StoreSpec:
    return _spec(request, tmp_path)


# the stores several processes may share (exclusive mode refuses a second owner:
# test_counter_exclusive pins that error)
@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def shared_store_spec(request, tmp_path) -> StoreSpec:
    return _spec(request, tmp_path)


@pytest.fixture
def open_store(store_spec):
    """Opens (and at teardown closes) stores on the test's one backing file or Redis prefix."""
    opened = []

    def _open():
        store = store_spec.open()
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()  # closing twice is harmless in both backends


@pytest.fixture
def store(open_store):
    return open_store()
