"""Counters shared by several daemons in Redis: one Lua script call per charge, or per batch.

Counter buckets are plain integer keys (INCRBY + EXPIRE) that expire with their window, request
ids are hashes with a 24 h TTL, balances live in one hash. Balances are the only data here that
must outlive a Redis restart: run the server with appendonly yes (or RDB snapshots you trust).

Charges go over one connection per thread, straight to EVALSHA: through redis-py's shared pool a
charge cost 150 us of CPU with 8 threads against 60 us this way (bench/counters_micro.py).
Create the store after forking, like any socket-holding object.

One round trip per decision: the script itself replays a known request id with its stored
answer (recall_in_charge: the pipeline makes no separate HMGET first), and the answer a charge
stores for retries goes out as one HSET on the same connection without waiting for its reply;
that reply is read just before the connection's next command (pipelined). The script has
already set the request's TTL, so HSET alone suffices. The answer is released before Redis has
acknowledged the HSET, as it was before Redis acknowledged anything durable (Redis fsyncs per
its own appendfsync); a lost HSET leaves the recorded charge, from which a retry gets the same
counters and balance, decided again on the rules. A batch (charge_many) is one script call
that charges its requests in order, and one more that stores all their answers.
"""
from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis

from . import record
from .model import IDEMPOTENCY_TTL, ChargeResult, CounterStoreError, RecipientCharge
from .redis_script import CHARGE_LUA, CHARGE_MANY_LUA, STORE_ANSWERS_LUA


log = logging.getLogger("smspolicy.counters")
_json = orjson.dumps   # the script's payload: bytes are fine for Redis, 10x faster than json
# charges per script call of a batch: a script holds Redis for its whole run, so a huge
# EvaluateBatch is cut into calls other daemons' commands can run between (a call of 100
# charges of 3 limits each held Redis at most ~7 ms here, by INFO commandstats)
JOBS_PER_CALL = 100


def _wire(recipients: list[RecipientCharge]) -> list:
    """The recipients as the charge script reads them (policy/counters/redis_script.py)."""
    return [[rc.index, rc.segments,
             [[i.key, i.amount, i.limit, i.ttl_seconds, i.span, i.code, i.limit_id] for i in rc.increments]]
            for rc in recipients]


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisCounterStore:
    recall_in_charge = True

    def __init__(self, url: str, prefix: str = "smsp:", *, idempotency_ttl: int = IDEMPOTENCY_TTL,
                 socket_timeout: float = 2.0):
        self.prefix = prefix
        self.idempotency_ttl = idempotency_ttl
        self._client = connect(url, socket_timeout)
        self._balances = prefix + "balance"
        self._local = threading.local()
        self._connections: list[redis.connection.AbstractConnection] = []
        self._connections_lock = threading.Lock()
        try:
            self._load_scripts()
        except redis.RedisError as exc:
            self._client.close()
            raise ConnectionError(f"counter store: cannot load the charge script into Redis at "
                                  f"{without_credentials(url)}: {exc}") from exc

    def charge(self, request_id: str, recipients: list[RecipientCharge], debit_account: str | None,
               price_per_segment: int, now: float, answer=None, wait: bool = True) -> ChargeResult:
        # `now` is already folded into each increment's bucket and ttl; Redis expires by its own clock
        payload = _json(_wire(recipients))
        args = (self.prefix, request_id, self.idempotency_ttl, debit_account or "", price_per_segment, payload)
        conn = self._connection()
        try:
            self._settle(conn)
            try:
                conn.send_command("EVALSHA", self._sha, 0, *args)
                reply = conn.read_response()
            except redis.exceptions.NoScriptError:  # the server restarted or its scripts were flushed
                self._load_scripts()
                conn.send_command("EVALSHA", self._sha, 0, *args)
                reply = conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._drop(conn)  # the reply may still be in flight: never read it as another call's
            raise CounterStoreError(f"Redis charge of request {request_id!r} failed or its reply was lost; "
                                    f"retrying with the same request id is safe: {exc}") from exc
        except redis.RedisError as exc:
            raise CounterStoreError(f"Redis refused the charge of request {request_id!r}: {exc}") from exc
        if reply[0] == 1:
            return record.decode(reply[1], replayed=True, stored_response=reply[2])
        result = record.decode(reply[1], replayed=False, stored_response=None)
        if answer is not None:  # the script cannot call back: the answer follows, pipelined
            response = answer(result)
            try:
                conn.send_command("HSET", self.prefix + "req:" + request_id, "s", response)
                self._local.unread = 1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._drop(conn)  # the charge is recorded: a retry replays it without the answer
                log.warning("Redis: the answer to request %r was not stored (%s); a retry gets "
                            "the recorded charge", request_id, exc)
        return result

    def charge_many(self, jobs: list) -> list:
        """charge() for each (request_id, recipients, debit_account, price, now, answer), in
        order, in one script call (plus one for the answers, sent behind without waiting).
        Each entry of the result is a ChargeResult or the CounterStoreError of that charge
        alone. The script charges the jobs one after another, so charges of one batch that hit
        the same counter see each other exactly as sequential calls would. One call, not one
        EVALSHA per job: packing and parsing a hundred commands in redis-py was most of the
        batch's cost in the daemon, and each command costs Redis its own dispatch too."""
        payloads = [_json([[rid, debit or "", price, _wire(recipients)]
                           for rid, recipients, debit, price, _now, _answer in jobs[k:k + JOBS_PER_CALL]])
                    for k in range(0, len(jobs), JOBS_PER_CALL)]
        conn = self._connection()
        try:
            self._settle(conn)
            try:
                replies = self._call(conn, payloads)
            except redis.exceptions.NoScriptError:  # the server lost its scripts: run them again
                self._load_scripts()                 # (a call that did run replays, by request id)
                replies = self._call(conn, payloads)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._drop(conn)
            raise CounterStoreError(f"Redis charge of a batch of {len(jobs)} failed or its replies were "
                                    f"lost; retrying with the same request ids is safe: {exc}") from exc
        except redis.RedisError as exc:  # a call refused (e.g. BUSY): the batch fails (see _call)
            return [CounterStoreError(f"Redis refused the charge of request {job[0]!r}: {exc}")
                    for job in jobs]
        results, answers = [], [self.prefix]
        for (rid, _r, _d, _p, _now, answer), reply in zip(jobs, replies):
            if reply[0] == 2:
                results.append(CounterStoreError(f"Redis refused the charge of request {rid!r}: "
                                                 f"{_text(reply[1])}"))
            elif reply[0] == 1:
                results.append(record.decode(reply[1], replayed=True, stored_response=reply[2]))
            else:
                res = record.decode(reply[1], replayed=False, stored_response=None)
                if answer is not None:
                    answers += (rid, answer(res))
                results.append(res)
        if len(answers) > 1:
            try:
                conn.send_command("EVALSHA", self._answers_sha, 0, *answers)
                self._local.unread = 1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._drop(conn)  # the charges are recorded: retries replay them without answers
                log.warning("Redis: %d answers were not stored (%s); retries get the recorded "
                            "charges", len(answers) // 2, exc)
        return results

    def _call(self, conn, payloads: list[bytes]) -> list:
        """The replies of the batch's script calls, pipelined; the first refused call raises
        (after all replies are read, so the connection stays in step): each call either ran
        whole or not at all, and the ones before it ran, so the caller fails them all and the
        retries replay those that ran."""
        conn.send_packed_command(conn.pack_commands(
            [("EVALSHA", self._many_sha, 0, self.prefix, self.idempotency_ttl, p) for p in payloads]))
        replies, refused = [], None
        for _ in payloads:
            try:
                replies += conn.read_response()
            except redis.ResponseError as exc:
                refused = refused or exc
        if refused is not None:
            raise refused
        return replies

    def _load_scripts(self) -> None:
        self._sha = self._client.script_load(CHARGE_LUA)
        self._many_sha = self._client.script_load(CHARGE_MANY_LUA)
        self._answers_sha = self._client.script_load(STORE_ANSWERS_LUA)

    def _settle(self, conn) -> None:
        """Read the replies of the HSETs the last charge on this connection left in flight."""
        unread = getattr(self._local, "unread", 0)
        self._local.unread = 0
        for _ in range(unread):
            try:
                conn.read_response()
            except redis.ResponseError as exc:  # the answers were not stored; the charges were
                log.warning("Redis refused to store answers: %s", exc)

    def _drop(self, conn) -> None:
        self._local.unread = 0
        conn.disconnect()

    def wait_durable(self, token: int) -> None:
        """A charge is applied by Redis when charge() returns: nothing to wait for."""

    def _connection(self) -> redis.connection.AbstractConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            pool = self._client.connection_pool
            conn = self._local.conn = pool.connection_class(**pool.connection_kwargs)
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def remember(self, request_id: str, response: bytes, ttl_seconds: int = IDEMPOTENCY_TTL,
                 now: float | None = None) -> None:
        key = self.prefix + "req:" + request_id
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(key, "s", response)
        pipe.expire(key, ttl_seconds)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise CounterStoreError(f"cannot store the answer to request {request_id!r}; a retry "
                                    f"replays the recorded decision instead: {exc}") from exc

    def recall(self, request_id: str, now: float | None = None) -> ChargeResult | None:
        rec, response = self._client.hmget(self.prefix + "req:" + request_id, ["r", "s"])
        if rec is None and response is None:
            return None
        return record.decode(rec, replayed=True, stored_response=response)

    def balance(self, account: str) -> int | None:
        raw = self._client.hget(self._balances, account)
        return None if raw is None else int(raw)

    def top_up(self, account: str, amount: int) -> int:
        return int(self._client.hincrby(self._balances, account, amount))

    def set_opening_balance(self, account: str, amount: int) -> bool:
        """Give `account` its configured opening balance unless it already has one; True if set."""
        return bool(self._client.hsetnx(self._balances, account, amount))

    def peek(self, keys: list[str]) -> dict[str, int]:
        """The stored value of each exact bucket key (0 when absent or expired); no window sums."""
        if not keys:
            return {}
        raw = self._client.mget([self.prefix + "c:" + k for k in keys])
        return {k: int(v) if v is not None else 0 for k, v in zip(keys, raw)}

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.disconnect()
            self._connections.clear()
        self._client.close()


def connect(url: str, socket_timeout: float = 2.0) -> redis.Redis:
    """A client of the Redis the daemons share, with one timeout for connecting and for each
    reply (the counter store, the connection leases and the API blacklist each hold one)."""
    return redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)


def without_credentials(url: str) -> str:
    """The URL as it may appear in logs: scheme, host, port, path; never a password."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
