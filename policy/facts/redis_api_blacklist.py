"""The API blacklist (MA:0039) shared by every daemon on one Redis.

Daemons that share counters in Redis serve one platform, and an operator's UpdateApiBlacklist
reaches one of them: the list lives in Redis so that all of them block the number. Each daemon
still answers from a set in its own memory (a lookup per recipient must not be a round trip);
a refresher thread compares a version number with Redis every `refresh_seconds` and, when it
moved, applies the changes made since its version, kept in Redis for the last KEEP_CHANGES
changes (a daemon further behind, or new, reads the whole set). So a change made through one
daemon holds in the others within about `refresh_seconds`, and in the daemon that made it at
once. Measured here with 10^5 numbers listed: applying one change of one number took 0.3-0.5
ms of CPU, reading the whole set 0.36-0.48 s (at start, or too far behind).

  <prefix>apibl               set of normalized numbers
  <prefix>apibl:ver           the number of the last change
  <prefix>apibl:changes       hash: change number -> "+n1,n2" (added) or "-n1,n2" (removed),
                              the numbers that change really added or removed, the last
                              KEEP_CHANGES of them
  <prefix>apibl:seeded:<list> the numbers of a scope-api list already seeded (each once, ever,
                              across all daemons: a number an operator removed stays removed)

Writes are Lua scripts (set, change and version together). Like balances, this list must
outlive a Redis restart: run the server with appendonly yes. Redis unreachable: a write fails
(the admin call answers UNAVAILABLE); lookups keep the last set read, and the refresher retries.
"""
from __future__ import annotations

import threading
from typing import Iterable

import redis

from ..counters.redis_store import connect, without_credentials
from .lists import Refresher, normalize_numbers
from .numbers import NumberSet, number_key

SEED_CHUNK = 5000     # numbers per seeding script call
KEEP_CHANGES = 1000   # changes kept in Redis for the daemons that are behind

# records a change: ARGV[1..3] set, version and changes keys, ARGV[4] kept changes; `changed`
# the numbers really added ('+') or removed ('-')
_RECORD = r"""
local function record(sign, changed)
  if #changed == 0 then return 0 end
  local v = redis.call('INCR', ARGV[2])
  redis.call('HSET', ARGV[3], v, sign .. table.concat(changed, ','))
  redis.call('HDEL', ARGV[3], v - tonumber(ARGV[4]))
  return #changed
end
"""

# ARGV: set key, version key, changes key, kept changes, command (SADD | SREM), numbers...
# -> how many changed
_CHANGE_LUA = _RECORD + r"""
local changed = {}
for i = 6, #ARGV do
  if redis.call(ARGV[5], ARGV[1], ARGV[i]) == 1 then changed[#changed + 1] = ARGV[i] end
end
return record(ARGV[5] == 'SADD' and '+' or '-', changed)
"""

# ARGV: set key, version key, changes key, kept changes, seeded key, numbers...
# -> how many were new to the blacklist
_SEED_LUA = _RECORD + r"""
local changed = {}
for i = 6, #ARGV do
  if redis.call('SADD', ARGV[5], ARGV[i]) == 1 and redis.call('SADD', ARGV[1], ARGV[i]) == 1 then
    changed[#changed + 1] = ARGV[i]
  end
end
return record('+', changed)
"""


class RedisApiBlacklist(NumberSet):
    """policy.facts.lists.ApiBlacklist, kept in Redis (see the module docstring)."""

    def __init__(self, url: str, prefix: str = "smsp:", refresh_seconds: float = 1.0,
                 socket_timeout: float = 2.0):
        self._client = connect(url, socket_timeout)
        self._set, self._version_key = prefix + "apibl", prefix + "apibl:ver"
        self._changes, self._seeded = prefix + "apibl:changes", prefix + "apibl:seeded:"
        self._script_keys = [self._set, self._version_key, self._changes, KEEP_CHANGES]
        self._change = self._client.register_script(_CHANGE_LUA)
        self._seed = self._client.register_script(_SEED_LUA)
        self._lock = threading.Lock()   # a refresh and a local write never interleave
        self._keys: set[int | str] = set()
        self._version: int | None = None   # the last change applied; None: nothing read yet
        try:
            self.refresh()              # at start Redis must answer, as for the counters
        except redis.RedisError as exc:
            self._client.close()
            raise ConnectionError(f"API blacklist: cannot read it from Redis at "
                                  f"{without_credentials(url)}: {exc}") from exc
        self._refresher = Refresher(self.refresh, refresh_seconds, "API blacklist in Redis")

    def refresh(self) -> str:
        """Catch up with the changes other daemons made: '' (none), 'changes' (applied one by
        one) or 'set' (the whole set read: new, too far behind, or Redis lost its data). Under
        the lock: a write of this daemon landing meanwhile would otherwise be undone here."""
        with self._lock:
            version = int(self._client.get(self._version_key) or 0)
            mine = self._version
            if version == mine:
                return ""
            if mine is not None and mine < version <= mine + KEEP_CHANGES:
                changes = self._client.hmget(self._changes, list(range(mine + 1, version + 1)))
                if None not in changes:
                    for change in changes:
                        keys = [number_key(n) for n in change[1:].decode().split(",")]
                        (self._keys.update if change[:1] == b"+" else self._keys.difference_update)(keys)
                    self._version = version
                    return "changes"
            pipe = self._client.pipeline(transaction=True)   # the members as of that version
            pipe.get(self._version_key)
            pipe.smembers(self._set)
            version, members = pipe.execute()
            self._keys, self._version = {number_key(m.decode()) for m in members}, int(version or 0)
            return "set"

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
            changed = int(self._change(args=[*self._script_keys, command, *numbers]))
            # this daemon sees its own change at once; the next refresh applies it again, in
            # order with whatever the others changed meanwhile
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
                    added += int(self._seed(args=[*self._script_keys, self._seeded + list_id,
                                                  *numbers[k:k + SEED_CHUNK]]))
        if added:
            self.refresh()
        return added

    def close(self) -> None:
        self._refresher.stop()
        self._client.close()
