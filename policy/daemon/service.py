"""gRPC servicers: PolicyService (front-ends) and AdminService (operators)."""
from __future__ import annotations

import logging
import queue
import threading
import time

import grpc
from google.protobuf.message import DecodeError

from ..api.v1 import policy_pb2 as pb
from ..api.v1 import policy_pb2_grpc as pb_grpc
from .convert import InvalidRequest, decision_to_response, submission_from_request
from .pipeline import CountersUnavailable, Pipeline, UnknownAccount

log = logging.getLogger("smspolicy.service")

# How long an answer waits for its decision's log record; past that (or with the log failing)
# it goes out anyway, as before: the record stays queued and `healthy` reports the trouble.
LOG_WAIT_SECONDS = 2.0
STREAM_BATCH_MAX = 100   # messages of a stream decided together at most (as one EvaluateBatch)
_END = object()          # the stream's end, behind its last request
POLICY_SERVICE = pb.DESCRIPTOR.services_by_name["PolicyService"].full_name
_ACCESS = {pb.ACCESS_MODE_CMPP: "cmpp", pb.ACCESS_MODE_HTTP: "http"}


# field 12 (replayed) = true, appended to a stored answer: the last value of a field wins
_REPLAYED = b"\x60\x01"


class _Unparsable:
    """A request message that does not parse (e.g. a string field that is not UTF-8): grpc's
    own deserializer would answer INTERNAL "Exception deserializing request!"."""
    __slots__ = ("why",)

    def __init__(self, cls, e: Exception):
        self.why = f"not a valid {cls.DESCRIPTOR.full_name} (string fields must be UTF-8): {e}"


def _parse(cls, data: bytes):
    try:
        return cls.FromString(data)
    except DecodeError as e:
        return _Unparsable(cls, e)


def _parsed(fn, cls):
    """A unary method taking the request's bytes: one that does not parse gets INVALID_ARGUMENT."""
    def method(data: bytes, context):
        request = _parse(cls, data)
        if type(request) is _Unparsable:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: {request.why}")
        return fn(request, context)
    return method


def answer_bytes(decision, explain: bool = False) -> bytes:
    """The EvaluateResponse of a decision, serialized. The counter step already serialized it
    (the answer kept for retries): those bytes go out as they are, not rebuilt."""
    if decision.replayed:
        return decision.stored_response + _REPLAYED
    if decision.stored_response and not explain:
        return decision.stored_response
    return decision_to_response(decision, explain).SerializeToString()


def batch_bytes(answers: list[bytes]) -> bytes:
    """EvaluateBatchResponse from serialized EvaluateResponses (field 1, length-delimited)."""
    out = bytearray()
    for a in answers:
        out += b"\x0a"
        n = len(a)
        while n > 0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        out += a
    return bytes(out)


class PolicyService(pb_grpc.PolicyServiceServicer):
    """Evaluate, EvaluateBatch and EvaluateStream answer serialized bytes (see answer_bytes):
    register with policy_service_handler, which sends them without a serializer."""

    def __init__(self, pipeline: Pipeline, login_policy):
        self.pipeline = pipeline
        self.login_policy = login_policy

    def _evaluate(self, req: pb.EvaluateRequest, context, durable: bool = True, where: str = "") -> bytes:
        try:
            sub = submission_from_request(req)
            decision = self.pipeline.evaluate(sub, explain=req.explain)
            if durable:
                self._durable()
        except InvalidRequest as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}{e}")
        except UnknownAccount as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except CountersUnavailable as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"counter store unavailable: {e}")
        except Exception:  # noqa: BLE001 - never a crash; the front-end answers flow control
            log.exception("evaluating %s failed", req.request_id)
            context.abort(grpc.StatusCode.INTERNAL, "internal error while evaluating; see the daemon log")
        return answer_bytes(decision, req.explain)

    def Evaluate(self, request, context):
        return self._evaluate(request, context)

    def EvaluateBatch(self, request, context):
        # one wait for the whole batch: its records go to disk in one commit, and its charges
        # in one journal commit (Pipeline.evaluate_batch)
        reqs = list(request.requests)
        if any(r.explain for r in reqs):
            responses = [self._evaluate(r, context, False, f"requests[{i}].") for i, r in enumerate(reqs)]
        else:
            responses = self._evaluate_many(reqs, context)
        self._durable()
        return batch_bytes(responses)

    def _evaluate_many(self, reqs: list, context, first: int = 0) -> list:
        """`first`: the index of reqs[0] in the call's requests (a stream's micro-batches), for
        errors that name the request: requests[i].field."""
        subs = []
        for i, req in enumerate(reqs, first):
            try:
                subs.append(submission_from_request(req))
            except InvalidRequest as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"requests[{i}].{e}")
        responses = []
        for req, decision in zip(reqs, self.pipeline.evaluate_batch(subs)):
            if isinstance(decision, Exception):  # the first failure fails the call, as one by one
                self._abort(req, decision, context)
            responses.append(answer_bytes(decision))
        return responses

    @staticmethod
    def _abort(req, e: Exception, context) -> None:
        if isinstance(e, UnknownAccount):
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        if isinstance(e, CountersUnavailable):
            context.abort(grpc.StatusCode.UNAVAILABLE, f"counter store unavailable: {e}")
        log.error("evaluating %s failed", req.request_id, exc_info=e)
        context.abort(grpc.StatusCode.INTERNAL, "internal error while evaluating; see the daemon log")

    def _durable(self) -> None:
        """Answer only once the decision log holds the decisions made so far: a kill -9 after
        the answer must not lose the record of a message the customer was told is accepted."""
        dlog = self.pipeline.decision_log
        if dlog is not None and not dlog.wait_durable(dlog.mark(), LOG_WAIT_SECONDS):
            log.warning("decision log %s not written within %g s (%s); answering anyway, the "
                        "records stay queued", dlog.path, LOG_WAIT_SECONDS, dlog.last_error)

    def EvaluateStream(self, request_iterator, context):
        """Micro-batches: whatever arrived while the last batch was being decided is decided
        together (Pipeline.evaluate_batch), so its charges and log records are waited for once.
        A reader thread takes requests off the stream as they come; with one message at a time
        in flight this is the one-by-one path with a thread hand-off more."""
        arrived: queue.SimpleQueue = queue.SimpleQueue()

        def read() -> None:
            try:
                for data in request_iterator:
                    arrived.put(_parse(pb.EvaluateRequest, data))
            except Exception:  # noqa: BLE001 - the client went away: stop after what arrived
                pass
            finally:
                arrived.put(_END)

        threading.Thread(target=read, name="evaluate-stream-reader", daemon=True).start()
        answered = 0
        while True:
            batch = [arrived.get()]
            while len(batch) < STREAM_BATCH_MAX:
                try:
                    batch.append(arrived.get_nowait())
                except queue.Empty:
                    break
            ended = batch[-1] is _END
            if ended:
                batch.pop()
            for i, r in enumerate(batch):
                if type(r) is _Unparsable:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"requests[{answered + i}]: {r.why}")
            if batch:
                if any(r.explain for r in batch):
                    responses = [self._evaluate(r, context, False, f"requests[{answered + i}].")
                                 for i, r in enumerate(batch)]
                else:
                    responses = self._evaluate_many(batch, context, answered)
                answered += len(batch)
                self._durable()
                yield from responses
            if ended:
                return

    def Login(self, request, context):
        if request.access_mode not in _ACCESS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "access_mode: required (CMPP or HTTP)")
        if request.access_mode == pb.ACCESS_MODE_CMPP and not request.malformed and len(request.authenticator_source) != 16:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "authenticator_source: must be 16 bytes")
        res = self.login_policy.login(request.account_id, bytes(request.authenticator_source),
                                      request.timestamp, request.version, request.peer_ip,
                                      _ACCESS[request.access_mode], request.malformed,
                                      bytes(request.http_signature), request.http_string_to_sign)
        return pb.LoginResponse(status=res.status, authenticator_ismg=res.authenticator_ismg,
                                reason=res.reason, session_id=res.session_id,
                                lease_seconds=res.lease_seconds, server_version=res.server_version,
                                reports_pushed=res.reports_pushed, access_code=res.access_code,
                                timezone=res.timezone)

    def RenewSession(self, request, context):
        try:
            return pb.SessionResponse(ok=self.login_policy.renew(request.session_id, request.account_id))
        except Exception as e:  # noqa: BLE001 - the lease store (Redis) failed: the lease is not lost
            self._lease_store_failed("renewing", request, e, context)

    def EndSession(self, request, context):
        try:
            return pb.SessionResponse(ok=self.login_policy.sessions.end(request.session_id))
        except Exception as e:  # noqa: BLE001 - the lease runs out by itself
            self._lease_store_failed("ending", request, e, context)

    @staticmethod
    def _lease_store_failed(what: str, request, e: Exception, context) -> None:
        log.warning("%s session %s failed: %s", what, request.session_id, e)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"session store unavailable: {e}")


def policy_service_handler(service: PolicyService) -> grpc.GenericRpcHandler:
    """add_PolicyServiceServicer_to_server, except that the Evaluate methods' answers are bytes
    already (no response serializer: grpc sends them as they are)."""
    # requests are parsed by the methods (_parsed, _parse): an unparsable one is INVALID_ARGUMENT
    methods = {
        "Evaluate": grpc.unary_unary_rpc_method_handler(
            _parsed(service.Evaluate, pb.EvaluateRequest), None, None),
        "EvaluateBatch": grpc.unary_unary_rpc_method_handler(
            _parsed(service.EvaluateBatch, pb.EvaluateBatchRequest), None, None),
        "EvaluateStream": grpc.stream_stream_rpc_method_handler(service.EvaluateStream, None, None),
    }
    for name, req, resp in (("Login", pb.LoginRequest, pb.LoginResponse),
                            ("RenewSession", pb.SessionRequest, pb.SessionResponse),
                            ("EndSession", pb.SessionRequest, pb.SessionResponse)):
        methods[name] = grpc.unary_unary_rpc_method_handler(
            _parsed(getattr(service, name), req), None, resp.SerializeToString)
    return grpc.method_handlers_generic_handler(POLICY_SERVICE, methods)


def admin_service_handler(service) -> grpc.GenericRpcHandler:
    """add_AdminServiceServicer_to_server, with requests parsed by _parsed (INVALID_ARGUMENT for
    one that does not parse)."""
    desc = pb.DESCRIPTOR.services_by_name["AdminService"]
    methods = {m.name: grpc.unary_unary_rpc_method_handler(
        _parsed(getattr(service, m.name), getattr(pb, m.input_type.name)), None,
        getattr(pb, m.output_type.name).SerializeToString) for m in desc.methods}
    return grpc.method_handlers_generic_handler(desc.full_name, methods)


class AdminService(pb_grpc.AdminServiceServicer):
    def __init__(self, runtime, pipeline: Pipeline, gateway_store_path: str = ""):
        self.runtime = runtime
        self.pipeline = pipeline
        self.gateway_store_path = gateway_store_path  # the review queue lives in the gateway store

    def _review_store(self, context):
        import os

        from gateway.store import GatewayStore
        if not self.gateway_store_path or not os.path.exists(self.gateway_store_path):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"no gateway store at {self.gateway_store_path!r}: the review queue is "
                          "kept by the front-end in the daemon's data folder")
        return GatewayStore(self.gateway_store_path)

    def ListHeld(self, request, context):
        from gateway.cmpp import decode_content
        store = self._review_store(context)
        try:
            rows = store.held_messages(request.limit or 100)
        finally:
            store.close()
        return pb.ListHeldResponse(messages=[pb.HeldMessage(
            id=r.id, account_id=r.account_id, destination=r.dest, src_id=r.src_id,
            channel_id=r.channel_id, message_ids=[str(m) for m in r.msg_ids],
            submit_time=r.submit_time, decision_id=r.decision_id,
            content=decode_content(r.content, r.msg_fmt)) for r in rows])

    def ReviewHeld(self, request, context):
        if request.review not in (pb.REVIEW_APPROVE, pb.REVIEW_REJECT):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "review: APPROVE or REJECT")
        store = self._review_store(context)
        act = store.approve if request.review == pb.REVIEW_APPROVE else store.reject_held
        try:
            done = [i for i in request.ids if act(i)]
        finally:
            store.close()
        return pb.ReviewHeldResponse(done=done, not_held=[i for i in request.ids if i not in done])

    def Reload(self, request, context):
        out = self.runtime.reload()
        return pb.ReloadResponse(ok=out.ok, rules_version=out.version, errors=out.errors)

    def Status(self, request, context):
        cur = self.runtime.current()
        last = self.runtime.last_outcome
        return pb.StatusResponse(
            rules_version=cur.version,
            loaded_at=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(cur.loaded_at)),
            last_reload_outcome=("ok" if last.ok else "refused") if last else "",
            last_reload_errors=last.errors if last else [],
            decisions=self.pipeline.metrics.decisions if self.pipeline.metrics else 0,
            counters_backend=type(self.pipeline.counters).__name__ if self.pipeline.counters else "none")

    def UpdateApiBlacklist(self, request, context):
        bl = self.runtime.api_blacklist
        try:
            if request.add:
                bl.add(request.add)
            if request.remove:
                bl.remove(request.remove)
        except ValueError as e:  # a non-number: nothing was written
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"add/remove: {e}")
        except Exception as e:  # noqa: BLE001 - the shared list's Redis failed
            log.warning("API blacklist update failed: %s", e)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"API blacklist store unavailable: {e}")
        return pb.UpdateApiBlacklistResponse(size=bl.size)

    def _need_counters(self, context) -> None:
        if self.pipeline.counters is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "counters_backend is none: this daemon keeps no balances")

    def _account(self, account_id: str, context):
        account = self.runtime.current().policy.accounts.get(account_id)
        if account is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"account_id: unknown account {account_id!r}")
        return account

    def GetBalance(self, request, context):
        account = self._account(request.account_id, context)
        self._need_counters(context)
        balance = self.pipeline.counters.balance(account.id) if account.billing == "prepaid" else 0
        return pb.BalanceResponse(account_id=account.id, balance=balance or 0, billing=account.billing)

    def TopUp(self, request, context):
        account = self._account(request.account_id, context)
        self._need_counters(context)
        if account.billing != "prepaid":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"account_id: {account.id} is postpaid; balances apply to prepaid accounts")
        balance = self.pipeline.counters.top_up(account.id, request.amount)
        return pb.BalanceResponse(account_id=account.id, balance=balance, billing=account.billing)
