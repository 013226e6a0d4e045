"""Connection leases (login code 21): the daemon's own (Sessions) and the shared forms, in a
SQLite file (SqliteSessions) and in Redis (RedisSessions), keep the same rules, checked here side
by side (Redis: a real redis-server)."""
from __future__ import annotations

import uuid

import pytest

from policy.daemon.login import Sessions
from policy.daemon.redis_sessions import RedisSessions
from policy.daemon.sqlite_sessions import SqliteSessions

LEASE = 60


@pytest.fixture(params=["memory", "sqlite", "redis"])
def sessions(request, tmp_path):
    if request.param == "memory":
        yield Sessions(LEASE)
        return
    if request.param == "sqlite":
        store = SqliteSessions(str(tmp_path / "sessions.db"), LEASE)
        yield store
        store.close()
        return
    store = RedisSessions(request.getfixturevalue("redis_url"), LEASE, prefix=f"t{uuid.uuid4().hex[:8]}:")
    yield store
    store.close()


def test_leases_up_to_the_limit_then_refused_and_an_end_frees_one(sessions):
    a, b = sessions.open("A", 2, 1000.0), sessions.open("A", 2, 1000.0)
    assert a and b and a != b
    assert sessions.open("A", 2, 1001.0) is None
    assert sessions.open("B", 1, 1001.0)          # per account
    assert sessions.end(a) and not sessions.end(a)
    assert sessions.open("A", 2, 1002.0)
    assert sessions.open("A", 2, 1002.0) is None


def test_a_lease_runs_out_unless_renewed(sessions):
    a = sessions.open("A", 1, 1000.0)
    assert sessions.renew(a, 1000.0 + LEASE - 1)            # now held until 1000 + 2 * LEASE - 1
    assert sessions.open("A", 1, 1000.0 + LEASE + 5) is None
    later = 1000.0 + 2 * LEASE
    b = sessions.open("A", 1, later)                        # a ran out
    assert b
    assert not sessions.renew(a, later + 1, "A", 1)         # and cannot come back: b holds the slot
    assert sessions.renew(b, later + 1, "A", 1)


def test_a_lost_lease_is_taken_back_while_the_account_has_room(sessions):
    # a front-end's connection whose lease this store does not hold (the daemon restarted, or
    # the lease ran out) keeps it if the account has room: the connection is open and counts
    assert sessions.renew("from-before", 1000.0, "A", 2)
    assert sessions.open("A", 2, 1000.0)
    assert sessions.open("A", 2, 1000.0) is None
    assert not sessions.renew("other", 1000.0, "A", 2)
    assert not sessions.renew("nobody", 1000.0)             # no account named: nothing to take back
    assert not sessions.renew("", 1000.0, "A", 5)
    assert sessions.end("from-before")


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_shared_leases_are_shared_by_every_store_on_them(kind, tmp_path, request):
    if kind == "sqlite":
        one, two = (SqliteSessions(str(tmp_path / "sessions.db"), LEASE) for _ in range(2))
    else:
        url, prefix = request.getfixturevalue("redis_url"), f"t{uuid.uuid4().hex[:8]}:"
        one, two = RedisSessions(url, LEASE, prefix=prefix), RedisSessions(url, LEASE, prefix=prefix)
    try:
        a = one.open("A", 2, 1000.0)
        assert two.open("A", 2, 1000.0)
        assert one.open("A", 2, 1000.0) is None and two.open("A", 2, 1000.0) is None
        assert two.renew(a, 1010.0) and two.end(a)
        assert one.open("A", 2, 1011.0)
    finally:
        one.close()
        two.close()
