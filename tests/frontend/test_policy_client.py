"""The front-end's gRPC client against a real grpc.aio PolicyService on loopback that records
the calls it gets: requests made while calls are out leave together, at most MAX_CALLS calls
are in flight, and queueing never stretches policy_timeout."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from gateway.frontend import policy_client
from gateway.frontend.policy_client import PolicyClient, PolicyUnavailable
from policy.api.v1 import policy_pb2 as pb
from policy.api.v1 import policy_pb2_grpc as pb_grpc
from tests.frontend.cmpp_client import run


class Recording(pb_grpc.PolicyServiceServicer):
    def __init__(self, delay: float):
        self.delay = delay
        self.calls: list[int] = []      # batch size of each call, in arrival order
        self.inflight = self.most_inflight = 0

    async def _answer(self, requests):
        self.calls.append(len(requests))
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.inflight -= 1
        return [pb.EvaluateResponse(request_id=r.request_id) for r in requests]

    async def Evaluate(self, r, context):
        return (await self._answer([r]))[0]

    async def EvaluateBatch(self, r, context):
        return pb.EvaluateBatchResponse(responses=await self._answer(list(r.requests)))


async def serve(delay: float):
    server = grpc.aio.server()
    servicer = Recording(delay)
    pb_grpc.add_PolicyServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, servicer, f"127.0.0.1:{port}"


def request(i: int) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(request_id=f"t:{i}", account_id="900001", destinations=["1"])


def test_requests_made_while_calls_are_out_leave_as_one_batch():
    async def go():
        server, rec, target = await serve(delay=0.2)
        client = PolicyClient(target, timeout=5.0)
        try:
            tasks = []
            for i in range(40):   # one request per loop turn, as a trickle of SUBMITs makes them
                tasks.append(asyncio.ensure_future(client.evaluate(request(i))))
                await asyncio.sleep(0.005)
            answers = await asyncio.gather(*tasks)
        finally:
            await client.close()
            await server.stop(None)
        return rec, [a.request_id for a in answers]
    rec, ids = run(go())
    assert ids == [f"t:{i}" for i in range(40)]          # each request got its own answer
    assert rec.most_inflight <= policy_client.MAX_CALLS
    # one call per request (40) without the queue; a few rounds of 0.2 s with it, however
    # slowly a loaded machine runs the trickle
    assert sum(rec.calls) == 40 and len(rec.calls) <= 10, rec.calls


@pytest.mark.parametrize("queued", [False, True])
def test_a_stalled_daemon_fails_every_request_within_policy_timeout(queued):
    async def go():
        server, rec, target = await serve(delay=3.0)
        client = PolicyClient(target, timeout=0.5)
        loop = asyncio.get_running_loop()
        try:
            if queued:   # both call slots taken first: the next request waits in the queue
                busy = [asyncio.ensure_future(client.evaluate(request(0)))]
                await asyncio.sleep(0.01)
                busy.append(asyncio.ensure_future(client.evaluate(request(1))))
                await asyncio.sleep(0.2)
                busy.append(asyncio.ensure_future(client.evaluate(request(2))))
                await asyncio.sleep(0.05)
                busy.append(asyncio.ensure_future(client.evaluate(request(3))))
            else:
                busy = [asyncio.ensure_future(client.evaluate(request(0)))]
            started = loop.time()
            outcomes = await asyncio.gather(*busy, return_exceptions=True)
            took = loop.time() - started
        finally:
            await client.close()
            await server.stop(None)
        return outcomes, took, rec
    outcomes, took, rec = run(go())
    assert all(isinstance(o, PolicyUnavailable) for o in outcomes), outcomes
    if queued:
        assert rec.calls[:2] == [1, 1]   # the two slots were taken when the others came
    assert took < 1.5          # 0.5 s policy_timeout (+ the 0.25 s spent queueing), never 3 s
