"""The HTTP customer API (docs/http-api.md): the platform's second access mode beside CMPP.

Every request is a login: its signature goes to PolicyService.Login (access mode HTTP, the
peer's address) with the account's other login checks (access mode 6, bound IPs 2, disabled 7,
balance 15, login window 16, concurrent requests against max_connections 21), and the lease is
ended when the request is answered.

Submits take the CMPP front-end's path: Msg_Ids from this process's own gateway code (one per
number), PolicyService.Evaluate (msg_fmt 8, content in UCS2, Src_Id = access code + extno; the
daemon bills long content by segments and the forwarder re-splits it), then the accepted, held
and rejected recipients are stored in one transaction (GatewayStore.accept_messages) before
the answer. The daemon unreachable or slower than policy_timeout: code 8 and nothing stored.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime

import grpc

from gateway.cmpp import MsgIdGenerator
from gateway.frontend.policy_client import PolicyClient, PolicyRefused, PolicyUnavailable
from gateway.store import Message, Recipient
from policy.api.v1 import policy_pb2 as pb
from policy.api.v1 import policy_pb2_grpc as pb_grpc
from policy.daemon.convert import MAX_CONTENT_BYTES, MAX_DESTINATIONS_ON_WIRE
from policy.settings import Settings

from . import payloads
from .answers import (
    AUTH, BAD_DESTINATION, BAD_LENGTH, BAD_LIST, BAD_SRC_ID, DEST_COUNT, FLOW_CONTROL, INTERNAL,
    MALFORMED, ApiError, login_refused, request_error, submit_refused,
)
from .http1 import MAX_HEAD, HttpError, Request, read_request, response
from .pulls import PulledReport
from .replay import ReplayGuard
from .signing import string_to_sign
from .storage import StoreThread

log = logging.getLogger("gateway.http_api")

STORE_FILE = "gateway.db"     # the front-end's and the forwarder's store
MAX_BODY = 1024 * 1024
MAX_CONNECTIONS = 1000        # open client connections; more are answered 503 and closed
MAX_SRC_ID = 21               # CMPP Src_Id octets: access code + extno
LINGER_SECONDS, LINGER_BYTES = 2.0, 8 * MAX_BODY
MAX_MOBILE = 32               # longer is no number at all (the daemon refuses it as garbage)
_ACTIONS = {pb.ACTION_ACCEPT: "accept", pb.ACTION_REJECT: "reject", pb.ACTION_HOLD: "hold"}
_UNDEFINED_STAT = "MA:0009"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request's account."""
    account_id: str
    access_code: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """One evaluated message: its submit-level code, and what to store when that is 0."""
    code: int
    message: str
    item: tuple[Message, list[Recipient]] | None = None
    segments: int = 0


class ApiServer:
    def __init__(self, settings: Settings, gateway_code: int):
        self.settings = settings
        self.frontend_id = f"{settings.gateway_id}-http"
        self.msgids = MsgIdGenerator(gateway_code, skip_current_second=True)
        self.replays = ReplayGuard(settings.login_clock_skew)
        os.makedirs(settings.data_dir, exist_ok=True)
        self.store = StoreThread(settings.path(STORE_FILE))
        self.client: PolicyClient | None = None
        self._admin_channel: grpc.aio.Channel | None = None
        self._admin: pb_grpc.AdminServiceStub | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()
        self._busy: set[asyncio.Task] = set()      # connections answering a request
        self._routes = {
            "/v1/sms/submit": {"POST": self._submit},
            "/v1/sms/p2p": {"POST": self._p2p},
            "/v1/reports": {"GET": self._pull},
            "/v1/reports/ack": {"POST": self._ack},
            "/v1/balance": {"GET": self._balance},
        }

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> tuple[str, int]:
        s = self.settings
        await self.store.open()
        self.client = PolicyClient(s.policy_target, s.policy_timeout)
        self._admin_channel = grpc.aio.insecure_channel(s.policy_target)
        self._admin = pb_grpc.AdminServiceStub(self._admin_channel)
        host, _, port = s.http_listen.rpartition(":")
        self._server = await asyncio.start_server(self._connection, host or "127.0.0.1",
                                                  int(port), limit=MAX_HEAD, reuse_address=True)
        return self._server.sockets[0].getsockname()[:2]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, close idle connections, let requests under way be answered (up to
        `grace`), then close the rest."""
        if self._server is not None:
            self._server.close()
        for task in self._connections - self._busy:
            task.cancel()
        if self._busy:
            await asyncio.wait(list(self._busy), timeout=grace)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self.client is not None:
            await self.client.close()
        if self._admin_channel is not None:
            await self._admin_channel.close()
        await self.store.close()

    # ------------------------------------------------------------------ connections
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername") or ("", 0)
        if len(self._connections) >= MAX_CONNECTIONS:
            log.warning("%d connections open; refusing one from %s", len(self._connections),
                        peer[0])
            writer.write(response(503, {"code": FLOW_CONTROL, "stage": "request", "message":
                                        "too many connections; try again"}, False,
                                  (("Retry-After", "1"),)))
            writer.close()
            return
        self._connections.add(task)
        try:
            while True:
                try:
                    req = await read_request(reader, writer, MAX_BODY)
                except HttpError as e:
                    writer.write(response(e.status, request_error(e.status, e.message).doc(),
                                          False))
                    await writer.drain()
                    await _linger(reader, writer)
                    break
                if req is None:
                    break
                self._busy.add(task)
                status, doc, headers = await self._answer(req, peer[0])
                keep = req.keep_alive and self._server.is_serving()
                writer.write(response(status, doc, keep, headers))
                await writer.drain()
                self._busy.discard(task)
                if not keep:
                    break
        except (ConnectionError, OSError):
            pass  # the client went away; a submit it sent is stored and answered in vain
        except asyncio.CancelledError:
            pass  # stop(): ending here keeps asyncio's stream callback from logging it
        finally:
            self._connections.discard(task)
            self._busy.discard(task)
            writer.close()

    async def _answer(self, req: Request, peer_ip: str) -> tuple[int, dict, tuple]:
        started = time.monotonic()
        caller = None
        try:
            methods = self._routes.get(req.path)
            if methods is None:
                raise request_error(404, f"no such resource {req.path[:100]!r}")
            handler = methods.get(req.method)
            if handler is None:
                raise ApiError(405, MALFORMED, f"{req.method} is not served for {req.path}",
                               "request", allow=sorted(methods))
            if req.method == "POST" and not _is_json(req.headers.get("content-type", "")):
                raise request_error(415, "Content-Type must be application/json")
            caller = await self._login(req, peer_ip)
            status, doc = await handler(caller, req)
        except ApiError as e:
            status, doc = e.status, e.doc()
        except Exception:  # our bug: this request fails, the server goes on
            log.exception("%s %s failed", req.method, req.path)
            status, doc = 500, {"code": INTERNAL, "message": "internal error; see the API log",
                                "stage": "request"}
        finally:
            # before answering: a client that sends its next request at once must find the
            # lease gone, or max_connections would refuse it (21)
            if caller is not None:
                await self._end_session(caller.session_id)
        level = logging.DEBUG if status == 200 and doc.get("code") == 0 else logging.INFO
        log.log(level, "%s %s %r from %s: %d code %s (%.1f ms)", req.method, req.path,
                caller.account_id if caller else req.headers.get("x-account", "-"), peer_ip,
                status, doc.get("code"), (time.monotonic() - started) * 1000)
        headers = ()
        if status == 405:
            headers = (("Allow", ", ".join(doc.get("allow", ()))),)
        elif status == 503:
            headers = (("Retry-After", "1"),)
        return status, doc, headers

    # ------------------------------------------------------------------ authentication
    async def _login(self, req: Request, peer_ip: str) -> Caller:
        h = req.headers
        account, ts, signature = h.get("x-account"), h.get("x-timestamp"), h.get("x-signature")
        if not (account and ts and signature):
            raise login_refused(AUTH, "the X-Account, X-Timestamp and X-Signature headers are "
                                      "required")
        if not (ts.isascii() and ts.isdigit() and len(ts) <= 10 and str(int(ts)) == ts
                and int(ts) < 2 ** 32):
            raise login_refused(AUTH, "X-Timestamp: expected the Unix time in seconds")
        try:
            digest = bytes.fromhex(signature)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise login_refused(AUTH, "X-Signature: expected 64 hex digits (HMAC-SHA256)")
        # POSTs change state (a replayed submit would send again); a repeated GET reads
        key = digest.hex() if req.method == "POST" else ""
        if key and not self.replays.claim(key, int(ts), time.time()):
            raise login_refused(AUTH, "this signed request was already served; sign every "
                                      "request anew")
        try:
            resp = await self.client.login(pb.LoginRequest(
                account_id=account, timestamp=int(ts), peer_ip=peer_ip,
                access_mode=pb.ACCESS_MODE_HTTP, frontend_id=self.frontend_id,
                http_signature=digest,
                http_string_to_sign=string_to_sign(req.method, req.target, ts, req.body)))
        except PolicyUnavailable as e:
            self.replays.release(key)
            log.warning("login of %r not checked: %s", account, e)
            raise ApiError(503, FLOW_CONTROL, "the policy daemon cannot be reached; try again",
                           "login") from None
        except PolicyRefused as e:
            self.replays.release(key)
            raise login_refused(AUTH, f"refused by the policy daemon: {e}") from None
        if resp.status:
            self.replays.release(key)
            raise login_refused(resp.status, resp.reason)
        return Caller(account, resp.access_code, resp.session_id)

    async def _end_session(self, session_id: str) -> None:
        try:
            await self.client.end(session_id)
        except (PolicyUnavailable, PolicyRefused) as e:
            # the lease expires by itself after session_lease_seconds
            log.warning("cannot end session lease %s: %s", session_id, e)

    # ------------------------------------------------------------------ submits
    async def _submit(self, caller: Caller, req: Request) -> tuple[int, dict]:
        sub = payloads.group_submit(req.body)
        src_id = _src_id(caller, sub.options)
        if not 1 <= len(sub.mobiles) <= MAX_DESTINATIONS_ON_WIRE:
            raise submit_refused(DEST_COUNT, f"{len(sub.mobiles)} numbers; a submit carries 1 "
                                             f"to 100")
        content = _ucs2(sub.content)
        if content is None:
            raise request_error(400, "content: not valid Unicode text (a lone surrogate)")
        msg_ids = self.msgids.next_block(len(sub.mobiles))
        outcome = await self._evaluate(caller, src_id, sub.mobiles, content, msg_ids,
                                       sub.options.report)
        if outcome.code:
            raise submit_refused(outcome.code, outcome.message)
        await self._store([outcome.item])
        return 200, {"code": 0, "message": "ok", "segments": outcome.segments, "messages": [
            {"mobile": m, "msg_id": str(i)} for m, i in zip(sub.mobiles, msg_ids)]}

    async def _p2p(self, caller: Caller, req: Request) -> tuple[int, dict]:
        sub = payloads.p2p_submit(req.body)
        src_id = _src_id(caller, sub.options)
        contents = []
        for i, (_, text) in enumerate(sub.entries):
            content = _ucs2(text)
            if content is None:
                raise submit_refused(BAD_LIST, f"mobileContentList[{i}].content: not valid "
                                               f"Unicode text", index=i, field="content")
            contents.append(content)
        msg_ids = self.msgids.next_block(len(sub.entries))
        outcomes = await asyncio.gather(*(
            self._evaluate(caller, src_id, [mobile], content, msg_ids[i:i + 1],
                           sub.options.report, i)
            for i, ((mobile, _), content) in enumerate(zip(sub.entries, contents))))
        stored = [o.item for o in outcomes if o.code == 0]
        if stored:
            try:
                await self._store(stored)
            except ApiError as e:
                outcomes = [o if o.code else Outcome(e.code, e.message) for o in outcomes]
        if all(o.code == FLOW_CONTROL for o in outcomes):
            raise submit_refused(FLOW_CONTROL, outcomes[0].message)
        messages = []
        for i, ((mobile, _), o, msg_id) in enumerate(zip(sub.entries, outcomes, msg_ids)):
            entry = {"index": i, "mobile": mobile, "code": o.code}
            if o.code:
                entry["message"] = o.message
            else:
                entry.update(msg_id=str(msg_id), segments=o.segments)
            messages.append(entry)
        return 200, {"code": 0, "message": "every entry answered; see each entry's code",
                     "messages": messages}

    async def _evaluate(self, caller: Caller, src_id: str, mobiles: list[str], content: bytes,
                        msg_ids: range, report: bool, list_index: int = 0) -> Outcome:
        if any(len(m) > MAX_MOBILE for m in mobiles):
            return Outcome(BAD_DESTINATION, "a destination is not a mobile number")
        if len(content) > MAX_CONTENT_BYTES:
            return Outcome(BAD_LENGTH, f"content of {len(content) // 2} characters is too long")
        request_id = f"{self.frontend_id}:{msg_ids[0]}"
        try:
            resp = await self.client.evaluate(pb.EvaluateRequest(
                request_id=request_id, account_id=caller.account_id,
                frontend_id=self.frontend_id, access_mode=pb.ACCESS_MODE_HTTP, src_id=src_id,
                destinations=mobiles, content=content, msg_fmt=8, registered_delivery=report,
                parts=1, message_ids=[str(i) for i in msg_ids], list_index=list_index))
        except PolicyUnavailable as e:
            log.warning("%s not evaluated (%s): code 8", request_id, e)
            return Outcome(FLOW_CONTROL, "the policy daemon cannot be reached; try again")
        except PolicyRefused as e:
            log.info("%s refused by the daemon as malformed: %s", request_id, e)
            return Outcome(MALFORMED, f"refused by the policy daemon: {e}")
        if resp.submit_result:
            return Outcome(resp.submit_result, resp.submit_reason or "refused")
        if len(resp.recipients) != len(mobiles):
            log.error("%s: the daemon decided %d recipients of %d; not stored (code 8)",
                      request_id, len(resp.recipients), len(mobiles))
            return Outcome(FLOW_CONTROL, "the policy daemon's answer was incomplete; try again")
        msg = Message(request_id, resp.decision_id, caller.account_id, src_id, "", 8, content,
                      report, time.time())
        recipients = []
        for r, msg_id in zip(resp.recipients, msg_ids):
            action = _ACTIONS.get(r.action, "reject")
            recipients.append(Recipient(r.destination, (msg_id,), action, r.channel_id,
                                        r.segments or 1, _stat(r.code) if action == "reject"
                                        else ""))
        return Outcome(0, "ok", (msg, recipients), resp.segments or 1)

    async def _store(self, items: list) -> None:
        try:
            await self.store.accept(items)
        except sqlite3.Error as e:
            log.error("cannot store %d evaluated messages: %s; code 8", len(items), e)
            raise submit_refused(FLOW_CONTROL, "the message store is busy; try again") from None

    # ------------------------------------------------------------------ reports, balance
    async def _pull(self, caller: Caller, req: Request) -> tuple[int, dict]:
        cursor, limit = payloads.pull_params(req.query)
        try:
            rows = await self.store.claim_reports(caller.account_id, cursor, limit,
                                                  self.settings.report_resend)
        except sqlite3.Error as e:
            raise _store_busy(e) from None
        return 200, {"code": 0, "message": "ok", "reports": [_report(r) for r in rows],
                     "cursor": rows[-1].id if len(rows) == limit else 0}

    async def _ack(self, caller: Caller, req: Request) -> tuple[int, dict]:
        ids = payloads.ack_ids(req.body)
        try:
            acked = await self.store.ack_reports(caller.account_id, ids)
        except sqlite3.Error as e:
            raise _store_busy(e) from None
        done = set(acked)
        return 200, {"code": 0, "message": "ok", "acked": acked,
                     "unknown": [i for i in ids if i not in done]}

    async def _balance(self, caller: Caller, req: Request) -> tuple[int, dict]:
        token = self.settings.admin_token
        try:
            resp = await self._admin.GetBalance(
                pb.BalanceRequest(account_id=caller.account_id),
                metadata=[("authorization", f"Bearer {token}")] if token else None,
                timeout=self.settings.policy_timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ApiError(503, FLOW_CONTROL, "the policy daemon cannot be reached; try "
                                                  "again", "request") from None
            log.error("GetBalance of %s: %s: %s", caller.account_id, e.code().name, e.details())
            raise ApiError(503, INTERNAL, "the balance cannot be read; see the API log",
                           "request") from None
        return 200, {"code": 0, "message": "ok", "balance": resp.balance,
                     "billing": resp.billing}


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After refusing a request whose body we did not read: half-close, and read (and drop)
    what the client still sends for a moment, so that closing does not reset the connection
    before the client has read our answer."""
    if writer.can_write_eof():
        writer.write_eof()
    deadline = time.monotonic() + LINGER_SECONDS
    dropped = 0
    try:
        while dropped < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
            data = await asyncio.wait_for(reader.read(65536), left)
            if not data:
                break
            dropped += len(data)
    except (TimeoutError, ConnectionError, OSError):
        pass


def _store_busy(error: sqlite3.Error) -> ApiError:
    log.error("the store cannot be used: %s", error)
    return ApiError(503, FLOW_CONTROL, "the report store is busy; try again", "request")


def _is_json(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/json"


def _src_id(caller: Caller, options: payloads.Options) -> str:
    src_id = caller.access_code + options.extno
    if len(src_id) > MAX_SRC_ID:
        raise submit_refused(BAD_SRC_ID, f"extno: access code and extno are {len(src_id)} "
                                         f"digits; at most {MAX_SRC_ID}")
    return src_id


def _ucs2(text: str) -> bytes | None:
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError:
        return None


def _stat(code: str) -> str:
    """A report's Stat is 7 printable ASCII characters; anything else is reported undefined."""
    if len(code) == 7 and code.isascii() and code.isprintable():
        return code
    return _UNDEFINED_STAT


def _time(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _report(r: PulledReport) -> dict:
    """The fields of a pushed report (gateway/push/client.py), so one parser reads both."""
    return {"id": r.id, "msg_id": str(r.msg_id), "mobile": r.dest, "stat": r.stat,
            "src_id": r.src_id, "service_id": r.service_id,
            "submit_time": _time(r.submit_time), "done_time": _time(r.done_time)}
