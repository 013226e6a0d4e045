"""The front-end's gRPC client of the policy daemon (PolicyService), on grpc.aio.

Every call has the deadline `policy_timeout`; a daemon that is down, overloaded or slower than
that raises PolicyUnavailable, which the session turns into "try again" (SUBMIT_RESP Result 8,
CONNECT_RESP Status 100) — nothing is ever let through unchecked.

Evaluations go out as EvaluateBatch calls (a lone one as Evaluate), at most MAX_CALLS of them
in flight (per daemon named, see below): what arrives while they are out waits and leaves as
one batch as soon as one comes back. Idle, a request leaves in the next turn of the loop (no
waiting added); under load the batches grow by themselves, which divides the per-call cost of
gRPC on both sides (and the daemon's per-call work, GIL contention of its worker threads
included) by the batch size.
Measured with the shipped daemon: one call per loop turn gave batches of 2 (median) at 4
connections x window 16, and the daemon spent its time on calls rather than decisions. A
queued request keeps its own deadline: the call carrying it gets what is left of
`policy_timeout` since the request was made, so a slow daemon still means Result 8 within
policy_timeout. The daemon answers a batch with one status, so a request it
refuses (INVALID_ARGUMENT, NOT_FOUND) would sink the others: those batches are replayed one
call per request, so each request gets its own answer (and a PolicyService without
EvaluateBatch is used call by call from then on).

Several daemons that share their counters (Redis, or one data folder) can serve one front-end:
`policy_target` lists them, `ipv4:10.0.0.1:50051,10.0.0.2:50051`. Calls are spread over them
round robin, up to MAX_CALLS per daemon named in flight in all, and a daemon that is down is
skipped until it is back, so one daemon lost costs the calls it had in flight (Result 8), not
the front-end.
"""
from __future__ import annotations

import asyncio

import grpc

from policy.api.v1 import policy_pb2 as pb
from policy.api.v1 import policy_pb2_grpc as pb_grpc

MAX_BATCH = 64
MAX_CALLS = 2   # EvaluateBatch calls in flight: one being decided, one on the wire
_PER_REQUEST = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.UNIMPLEMENTED)


class PolicyUnavailable(Exception):
    """No answer from the daemon in time (or a transport / internal error)."""


class PolicyRefused(Exception):
    """The daemon refused to evaluate the request as malformed (INVALID_ARGUMENT)."""


def daemons_in(target: str) -> int:
    """How many daemons a gRPC target names: `ipv4:`/`ipv6:` list several, comma-separated."""
    if target.startswith(("ipv4:", "ipv6:")):
        return len([a for a in target.split(":", 1)[1].split(",") if a.strip()])
    return 1


class PolicyClient:
    def __init__(self, target: str, timeout: float):
        self.target = target
        self.timeout = timeout
        self.max_calls = MAX_CALLS * daemons_in(target)
        # A daemon back after an outage must be used within a second, not after gRPC's default
        # reconnect backoff (up to 120 s of Result 8).
        self._channel = grpc.aio.insecure_channel(target, options=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.lb_policy_name", "round_robin"),   # several daemons: spread, skip one down
        ])
        self._stub = pb_grpc.PolicyServiceStub(self._channel)
        self._queue: list[tuple[pb.EvaluateRequest, asyncio.Future, float]] = []  # + deadline
        self._tasks: set[asyncio.Task] = set()
        self._calls = 0
        self._batching = True

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method, request, timeout: float | None = None):
        try:
            return await method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise PolicyRefused(e.details()) from None
            raise PolicyUnavailable(f"{e.code().name}: {e.details()}") from None

    async def evaluate(self, request: pb.EvaluateRequest) -> pb.EvaluateResponse:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue and self._calls < self.max_calls:
            loop.call_soon(self._flush)
        self._queue.append((request, future, loop.time() + self.timeout))
        return await future

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and self._calls < self.max_calls:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._calls += 1
            task = loop.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._calls -= 1
        if self._queue:
            self._flush()

    async def _send(self, batch) -> None:
        try:
            await self._send_batch(batch)
        finally:
            # whatever went wrong (closed while the call was out, an unexpected error), no
            # request waits for ever: its SUBMIT gets Result 8
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(PolicyUnavailable("the call ended without an answer"))

    async def _send_batch(self, batch) -> None:
        # the oldest request's deadline bounds the call: queueing never extends policy_timeout
        timeout = batch[0][2] - asyncio.get_running_loop().time()
        if timeout <= 0:
            error = PolicyUnavailable("DEADLINE_EXCEEDED: queued for policy_timeout")
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        if len(batch) == 1 or not self._batching:
            await asyncio.gather(*(self._one(r, f, timeout) for r, f, _ in batch))
            return
        try:
            resp = await self._stub.EvaluateBatch(
                pb.EvaluateBatchRequest(requests=[r for r, _, _ in batch]), timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                self._batching = False   # a PolicyService without EvaluateBatch
            if e.code() in _PER_REQUEST:
                await asyncio.gather(*(self._one(r, f, timeout) for r, f, _ in batch))
                return
            error = PolicyUnavailable(f"{e.code().name}: {e.details()}")
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        answers = resp.responses
        n = len(answers)
        for i, (_, future, _) in enumerate(batch):
            if future.done():
                continue
            if i < n:
                future.set_result(answers[i])
            else:
                future.set_exception(PolicyUnavailable(
                    f"EvaluateBatch answered {n} of {len(batch)} requests"))

    async def _one(self, request, future, timeout: float) -> None:
        try:
            answer = await self._call(self._stub.Evaluate, request, timeout)
        except (PolicyUnavailable, PolicyRefused) as e:
            if not future.done():
                future.set_exception(e)
        else:
            if not future.done():
                future.set_result(answer)

    async def login(self, request: pb.LoginRequest) -> pb.LoginResponse:
        return await self._call(self._stub.Login, request)

    async def renew(self, session_id: str, account_id: str = "") -> bool:
        resp = await self._call(self._stub.RenewSession,
                                pb.SessionRequest(session_id=session_id, account_id=account_id))
        return resp.ok

    async def end(self, session_id: str) -> bool:
        resp = await self._call(self._stub.EndSession, pb.SessionRequest(session_id=session_id))
        return resp.ok
