"""The API blacklist (MA:0039) shared by every daemon on one Redis.

Daemons that share counters in Redis serve one platform, and an operator's UpdateApiBlacklist
reaches one of them: the list lives in Redis so that all of them block the number. Each daemon
still answers from a set in its own memory (a lookup per recipient must not be a round trip);
a refresher thread compares a version number with Redis every `refresh_seconds` and, when it
moved, reads the whole set again. So a change made through one daemon holds in the others within
about `refresh_seconds`, and in the daemon that made it at once. A whole read per change suits
an operator's list (changes per minute, up to ~10^5 numbers); the big lists belong in the
rules or the watched folder.

  <prefix>apibl               set of normalized numbers
  <prefix>apibl:ver           incremented by every write that changed the set
  <prefix>apibl:seeded:<list> the numbers of a scope-api list already seeded (each once, ever,
                              across all daemons: a number an operator removed stays removed)

Writes are Lua scripts (change and version together). Like balances, this list must outlive a
Redis restart: run the server with appendonly yes. Redis unreachable: a write fails (the admin
call answers UNAVAILABLE); lookups keep the last set read, and the refresher retries.
"""
from __future__ import annotations

import threading
from typing import Iterable

import redis

from .lists import Refresher, normalize_numbers
from .numbers import NumberSet, number_key

SEED_CHUNK = 5000   # numbers per seeding script call

# ARGV: set key, version key, command (SADD | SREM), numbers... -> how many changed
_CHANGE_LUA = r"""
local n = 0
for i = 4, #ARGV do n = n + redis.call(ARGV[3], ARGV[1], ARGV[i]) end
if n > 0 then redis.call('INCR', ARGV[2]) end
return n
"""

# ARGV: set key, version key, seeded key, numbers... -> how many were new to the blacklist
_SEED_LUA = r"""
local n = 0
for i = 4, #ARGV do
  if redis.call('SADD', ARGV[3], ARGV[i]) == 1 then n = n + redis.call('SADD', ARGV[1], ARGV[i]) end
end
if n > 0 then redis.call('INCR', ARGV[2]) end
return n
"""


class RedisApiBlacklist(NumberSet):
    """policy.facts.lists.ApiBlacklist, kept in Redis (see the module docstring)."""

    def __init__(self, url: str, prefix: str = "smsp:", refresh_seconds: float = 1.0,
                 socket_timeout: float = 2.0):
        self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                            socket_connect_timeout=socket_timeout)
        self._set, self._version_key = prefix + "apibl", prefix + "apibl:ver"
        self._seeded = prefix + "apibl:seeded:"
        self._change = self._client.register_script(_CHANGE_LUA)
        self._seed = self._client.register_script(_SEED_LUA)
        self._lock = threading.Lock()   # a refresh and a local write never interleave
        self._keys: set[int | str] = set()
        self._version: bytes | None | bool = False   # False: never read
        self.refresh()                  # at start Redis must answer, as for the counters
        self._refresher = Refresher(self.refresh, refresh_seconds, "API blacklist in Redis")

    def refresh(self) -> bool:
        """Read the set again if another daemon changed it; True if it was read. Under the
        lock: a write of this daemon landing between the read and the swap would vanish here
        until the next change."""
        with self._lock:
            version = self._client.get(self._version_key)
            if version == self._version:
                return False
            pipe = self._client.pipeline(transaction=True)   # the members as of that version
            pipe.get(self._version_key)
            pipe.smembers(self._set)
            version, members = pipe.execute()
            self._keys, self._version = {number_key(m.decode()) for m in members}, version
            return True

    def add(self, numbers: Iterable[str], source: str = "api") -> int:
        """Adds the numbers (any accepted prefix form); returns how many were new."""
        return self._write("SADD", normalize_numbers(numbers))

    def remove(self, numbers: Iterable[str]) -> int:
        """Removes the numbers; returns how many were listed."""
        return self._write("SREM", normalize_numbers(numbers))

    def _write(self, command: str, numbers: list[str]) -> int:
        if not numbers:
            return 0
        with self._lock:
            changed = int(self._change(args=[self._set, self._version_key, command, *numbers]))
            # this daemon sees its own change at once; the version moved, so the next refresh
            # reads the set again with whatever the others changed meanwhile
            keys = [number_key(n) for n in numbers]
            (self._keys.update if command == "SADD" else self._keys.difference_update)(keys)
        return changed

    def seed(self, entries: dict[str, Iterable[str]]) -> int:
        """Adds list entries not seeded before (list id -> numbers); returns how many were new."""
        added = 0
        for list_id, numbers in entries.items():
            numbers = sorted(set(normalize_numbers(numbers)))
            for k in range(0, len(numbers), SEED_CHUNK):   # a script holds Redis while it runs
                with self._lock:
                    added += int(self._seed(args=[self._set, self._version_key, self._seeded + list_id,
                                                  *numbers[k:k + SEED_CHUNK]]))
        if added:
            self.refresh()
        return added

    def close(self) -> None:
        self._refresher.stop()
        self._client.close()
