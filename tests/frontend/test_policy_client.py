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


def test_several_daemons_share_the_calls_and_one_down_is_skipped():
    """policy_target ipv4:A,B: calls go to both daemons, and once A is gone every request is
    answered by B (none is refused for A's absence)."""
    async def go():
        (s1, rec1, t1), (s2, rec2, t2) = await serve(delay=0.05), await serve(delay=0.05)
        client = PolicyClient(f"ipv4:{t1},{t2}", timeout=5.0)
        try:
            first = []
            for i in range(60):
                first.append(asyncio.ensure_future(client.evaluate(request(i))))
                await asyncio.sleep(0.005)
            await asyncio.gather(*first)
            spread = (sum(rec1.calls), sum(rec2.calls))
            await s1.stop(None)
            await asyncio.sleep(0.3)
            before = sum(rec2.calls)
            later = await asyncio.gather(*(client.evaluate(request(100 + i)) for i in range(20)),
                                         return_exceptions=True)
            return spread, later, sum(rec2.calls) - before
        finally:
            await client.close()
            await s2.stop(None)
    spread, later, on_b = run(go())
    assert spread[0] > 0 and spread[1] > 0 and sum(spread) == 60, spread
    assert [getattr(a, "request_id", a) for a in later] == [f"t:{100 + i}" for i in range(20)]
    assert on_b == 20


def test_the_daemons_a_target_names():
    assert policy_client.daemons_in("127.0.0.1:50051") == 1
    assert policy_client.daemons_in("dns:///policy.internal:50051") == 1
    assert policy_client.daemons_in("ipv4:10.0.0.1:50051,10.0.0.2:50051") == 2
    assert policy_client.daemons_in("ipv6:[::1]:50051,[::1]:50052,[::1]:50053") == 3
