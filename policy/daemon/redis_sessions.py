"""Connection leases in Redis, so that max_connections (login code 21) holds across every daemon.

The daemon keeps leases in its own memory (policy.daemon.login.Sessions) when it is the only
one. Daemons that share counters in Redis (counters_backend: redis) serve one platform from
several processes, and a front-end's Login, RenewSession and EndSession may each reach a
different one (behind one port with reuse_port, or after a restart), so their leases live in
that Redis too, with the same semantics:

  <prefix>sess:<account>   sorted set: session id -> lease expiry (epoch seconds)
  <prefix>sid:<session>    string: the account holding the session

Each operation is one Lua script, atomic against the other daemons' logins: counting the live
leases and adding one cannot interleave. Keys expire a minute after their last lease would.
Expiry uses the calling daemon's clock, as the in-memory leases do; clocks of daemons within a
few seconds of each other only shift when a lease of 60 s runs out.
Keys are built inside the scripts, as the counter scripts' are: a standalone Redis or one
primary, not Redis Cluster.
"""
from __future__ import annotations

import uuid

from ..counters.redis_store import connect

_GRACE = 60   # seconds the keys outlive the last lease they hold

# ARGV: prefix, account, limit, now, lease seconds, session id -> 1 opened, 0 account full
OPEN_LUA = r"""
local zkey = ARGV[1] .. 'sess:' .. ARGV[2]
local now, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
if redis.call('ZCARD', zkey) >= tonumber(ARGV[3]) then return 0 end
local ttl = math.ceil(lease) + tonumber(ARGV[7])
redis.call('ZADD', zkey, now + lease, ARGV[6])
redis.call('EXPIRE', zkey, ttl)
redis.call('SET', ARGV[1] .. 'sid:' .. ARGV[6], ARGV[2], 'EX', ttl)
return 1
"""

# ARGV: prefix, session id, now, lease seconds, account ('' = none), limit -> 1 kept, 0 lost
RENEW_LUA = r"""
local prefix, sid, now, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local skey = prefix .. 'sid:' .. sid
local ttl = math.ceil(lease) + tonumber(ARGV[7])
local held = redis.call('GET', skey)
if held then
  local zkey = prefix .. 'sess:' .. held
  local expiry = redis.call('ZSCORE', zkey, sid)
  if expiry and tonumber(expiry) > now then
    redis.call('ZADD', zkey, now + lease, sid)
    redis.call('EXPIRE', zkey, ttl)
    redis.call('EXPIRE', skey, ttl)
    return 1
  end
  redis.call('ZREM', zkey, sid)
  redis.call('DEL', skey)
end
local account = ARGV[5]
if sid == '' or account == '' then return 0 end
local zkey = prefix .. 'sess:' .. account
redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
if redis.call('ZCARD', zkey) >= tonumber(ARGV[6]) then return 0 end
redis.call('ZADD', zkey, now + lease, sid)
redis.call('EXPIRE', zkey, ttl)
redis.call('SET', skey, account, 'EX', ttl)
return 1
"""

# ARGV: prefix, session id -> 1 ended, 0 unknown
END_LUA = r"""
local skey = ARGV[1] .. 'sid:' .. ARGV[2]
local held = redis.call('GET', skey)
if not held then return 0 end
redis.call('ZREM', ARGV[1] .. 'sess:' .. held, ARGV[2])
redis.call('DEL', skey)
return 1
"""


class RedisSessions:
    """policy.daemon.login.Sessions, kept in Redis (see the module docstring)."""

    def __init__(self, url: str, lease_seconds: int, prefix: str = "smsp:", socket_timeout: float = 2.0):
        self.lease_seconds = lease_seconds
        self.prefix = prefix
        self._client = connect(url, socket_timeout)
        # redis-py's Script runs EVALSHA and loads the script again if Redis lost it
        self._open = self._client.register_script(OPEN_LUA)
        self._renew = self._client.register_script(RENEW_LUA)
        self._end = self._client.register_script(END_LUA)

    def open(self, account_id: str, limit: int, now: float) -> str | None:
        sid = uuid.uuid4().hex
        opened = self._open(args=[self.prefix, account_id, limit, now, self.lease_seconds, sid, _GRACE])
        return sid if opened else None

    def renew(self, session_id: str, now: float, account_id: str = "", limit: int = 0) -> bool:
        return bool(self._renew(args=[self.prefix, session_id, now, self.lease_seconds,
                                      account_id, limit, _GRACE]))

    def end(self, session_id: str) -> bool:
        return bool(self._end(args=[self.prefix, session_id]))

    def close(self) -> None:
        self._client.close()
