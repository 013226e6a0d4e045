"""Letting time pass for a counter store in a test, as far as expiry goes.

A charge's `now` moves the windows, but a bucket's expiry is the backend's own business: Redis
drops a key when its TTL runs out (by its own clock); SQLite deletes the rows whose expires_at
has passed whenever it sweeps (and exclusive mode decides from memory until it is reopened).
`let_time_pass` makes each backend forget what it may have forgotten `seconds` later, so a test
can charge at t1, let t2 - t1 pass and charge at t2 without waiting: Redis TTLs are shortened by
`seconds` (keys past theirs deleted); a SQLite store is closed, its expired rows are deleted as
a sweep at t2 would, and it is reopened (a daemon restart: exclusive mode reads the file again).
"""
from __future__ import annotations

import sqlite3

import redis


def let_time_pass(spec, store, open_store, now: float, seconds: int):
    """Expire what the backend may have expired `seconds` after epoch `now`; returns the store
    to go on with (SQLite: a reopened one; the old one is closed)."""
    if spec.backend == "redis":
        client = redis.Redis.from_url(spec.location)
        try:
            for key in list(client.scan_iter(match=spec.prefix + "*", count=1000)):
                left = client.pttl(key)
                if left < 0:
                    continue
                if left <= seconds * 1000:
                    client.delete(key)
                else:
                    client.pexpire(key, left - seconds * 1000)
        finally:
            client.close()
        return store
    later = int(now) + seconds
    store.close()
    conn = sqlite3.connect(spec.location)
    try:
        with conn:
            conn.execute("DELETE FROM counters WHERE expires_at < ?", (later,))
            conn.execute("DELETE FROM requests WHERE expires_at < ?", (later,))
    finally:
        conn.close()
    return open_store()
