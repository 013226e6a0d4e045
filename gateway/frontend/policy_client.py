"""The front-end's gRPC client of the policy daemon (PolicyService), on grpc.aio.

Every call has the deadline `policy_timeout`; a daemon that is down, overloaded or slower than
that raises PolicyUnavailable, which the session turns into "try again" (SUBMIT_RESP Result 8,
CONNECT_RESP Status 100) — nothing is ever let through unchecked.

Evaluations requested in the same turn of the event loop go out as one EvaluateBatch call (a
lone one as Evaluate): under load this divides the per-call cost of gRPC on both sides by the
batch size, and adds no waiting. The daemon answers a batch with one status, so a request it
refuses (INVALID_ARGUMENT, NOT_FOUND) would sink the others: those batches are replayed one
call per request, so each request gets its own answer (and a PolicyService without
EvaluateBatch is used call by call from then on).
"""
from __future__ import annotations

import asyncio

import grpc

from policy.api.v1 import policy_pb2 as pb
from policy.api.v1 import policy_pb2_grpc as pb_grpc

MAX_BATCH = 64
_PER_REQUEST = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.UNIMPLEMENTED)


class PolicyUnavailable(Exception):
    """No answer from the daemon in time (or a transport / internal error)."""


class PolicyRefused(Exception):
    """The daemon refused to evaluate the request as malformed (INVALID_ARGUMENT)."""


class PolicyClient:
    def __init__(self, target: str, timeout: float):
        self.target = target
        self.timeout = timeout
        # A daemon back after an outage must be used within a second, not after gRPC's default
        # reconnect backoff (up to 120 s of Result 8).
        self._channel = grpc.aio.insecure_channel(target, options=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ])
        self._stub = pb_grpc.PolicyServiceStub(self._channel)
        self._queue: list[tuple[pb.EvaluateRequest, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()
        self._batching = True

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method, request):
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise PolicyRefused(e.details()) from None
            raise PolicyUnavailable(f"{e.code().name}: {e.details()}") from None

    async def evaluate(self, request: pb.EvaluateRequest) -> pb.EvaluateResponse:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((request, future))
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for i in range(0, len(queue), MAX_BATCH):
            task = asyncio.get_running_loop().create_task(self._send(queue[i:i + MAX_BATCH]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch) -> None:
        if len(batch) == 1 or not self._batching:
            await asyncio.gather(*(self._one(r, f) for r, f in batch))
            return
        try:
            resp = await self._stub.EvaluateBatch(
                pb.EvaluateBatchRequest(requests=[r for r, _ in batch]), timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                self._batching = False   # a PolicyService without EvaluateBatch
            if e.code() in _PER_REQUEST:
                await asyncio.gather(*(self._one(r, f) for r, f in batch))
                return
            error = PolicyUnavailable(f"{e.code().name}: {e.details()}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        answers = list(resp.responses)
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            if i < len(answers):
                future.set_result(answers[i])
            else:
                future.set_exception(PolicyUnavailable(
                    f"EvaluateBatch answered {len(answers)} of {len(batch)} requests"))

    async def _one(self, request, future) -> None:
        try:
            answer = await self._call(self._stub.Evaluate, request)
        except (PolicyUnavailable, PolicyRefused) as e:
            if not future.done():
                future.set_exception(e)
        else:
            if not future.done():
                future.set_result(answer)

    async def login(self, request: pb.LoginRequest) -> pb.LoginResponse:
        return await self._call(self._stub.Login, request)

    async def renew(self, session_id: str) -> bool:
        resp = await self._call(self._stub.RenewSession, pb.SessionRequest(session_id=session_id))
        return resp.ok

    async def end(self, session_id: str) -> bool:
        resp = await self._call(self._stub.EndSession, pb.SessionRequest(session_id=session_id))
        return resp.ok
