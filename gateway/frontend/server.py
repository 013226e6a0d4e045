"""The customer-facing CMPP server: sessions, the SUBMIT path, timers, report delivery.

SUBMIT path (one message, N recipients; group sends get one Msg_Id per recipient):

    decode -> long SMS? reassemble first (reassembly.py) -> PolicyService.Evaluate
           -> one SQLite transaction: accepted/held recipients into the outbox, rejected ones as
              status reports (store.accept_message) -> only then SUBMIT_RESP.

* A submit-level refusal (Evaluate's submit_result != 0) is the SUBMIT_RESP Result; nothing is
  stored.
* The daemon unreachable or slower than policy_timeout: Result 8, nothing stored, nothing
  forwarded; the customer sends again.
* Long SMS: every part is answered as it arrives (Result 0 once it is in the store). The part
  that completes the message waits for the evaluation and carries the submit-level result; if
  that result refuses the message, the other parts get status reports (MA:0037 for result 4,
  "content too long", MA:0009 otherwise). Rejected recipients get one report per part.
* At_Time (定时短信): a scheduled message is evaluated and stored at once (SUBMIT_RESP as
  usual) with its time as the outbox row's `not_before`; the forwarder sends it no earlier. An
  At_Time in the past means at once; one that is not an SMPP time (16 characters,
  `YYMMDDhhmmsstnnp` absolute or `...R` relative, gateway/cmpp/smpptime.py) gets Result 1
  (message structure error: the seed's submit table has no code of its own for it) and
  nothing is stored. A long SMS is scheduled by the At_Time of the part that completes it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.cmpp import MsgIdGenerator, QueryResp, Submit, parse_smpp_time, parse_udh, udhi_set
from policy.api.v1 import policy_pb2 as pb
from policy.settings import Settings

from ..store import GatewayStore, Message, Part, Recipient
from .policy_client import PolicyClient, PolicyRefused, PolicyUnavailable
from .reassembly import SEQUENCE_STAT, TIMEOUT_STAT, Offer, Reassembler, message_key, part_reports
from .reports import ReportPump
from .session import Session

log = logging.getLogger("smspolicy.frontend")

STORE_FILE = "gateway.db"   # in settings.data_dir; the forwarder opens the same file
OK, MALFORMED, FLOW_CONTROL, BAD_LENGTH = 0, 1, 8, 4
TOO_LONG_STAT = "MA:0037"   # 内容超长拒绝: the other parts of a message refused with result 4
UNDEFINED_STAT = "MA:0009"  # 未定义错误: the other parts of a message refused otherwise
_ACTIONS = {pb.ACTION_ACCEPT: "accept", pb.ACTION_REJECT: "reject", pb.ACTION_HOLD: "hold"}
# The platform's time zone until a login answer names the one of the loaded rules
# (LoginResponse.timezone, platform.yaml `timezone`): times a customer reads (report
# Submit_time/Done_time, Msg_Id, QUERY's day) are platform time, never the host's zone.
DEFAULT_ZONE = "Asia/Shanghai"


def _stat(code: str) -> str:
    """A report's Stat is exactly 7 printable ASCII characters; anything else the daemon might
    say is reported as undefined rather than breaking the DELIVER."""
    if len(code) == 7 and code.isascii() and code.isprintable():
        return code
    return UNDEFINED_STAT


def _max_content(msg_fmt: int) -> int:
    return 159 if msg_fmt == 0 else 140   # cmpp.md §5: ASCII < 160 bytes, others <= 140


class FrontEnd:
    def __init__(self, settings: Settings, store: GatewayStore | None = None):
        self.settings = settings
        os.makedirs(settings.data_dir, exist_ok=True)
        self.store = store or GatewayStore(settings.path(STORE_FILE), background_checkpoint=True)
        self.zone = ZoneInfo(DEFAULT_ZONE)
        # aware datetimes: the ids' time fields are platform time, and a change of zone (a
        # reload of platform.yaml) cannot move the generator's clock backwards
        self.msgids = MsgIdGenerator(settings.gateway_code, clock=lambda: datetime.now(self.zone),
                                     skip_current_second=True)
        self.reassembler = Reassembler(self.store, settings.reassembly_timeout)
        self.sessions: set[Session] = set()
        self.accounts: dict[str, set[Session]] = {}   # logged-in sessions per account
        self.client: PolicyClient | None = None
        self.pump: ReportPump | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._commits: list[tuple[tuple, asyncio.Future]] = []
        self._acks: dict[str, list[int]] = {}       # DELIVER_RESPs of this loop turn
        self._ending: set[asyncio.Task] = set()     # EndSession calls under way
        timers = (settings.active_test_interval, settings.response_timeout,
                  settings.idle_timeout, settings.reassembly_timeout, settings.report_resend)
        self.tick_interval = max(0.05, min(1.0, min(timers) / 4))

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> tuple[str, int]:
        s = self.settings
        self.client = PolicyClient(s.policy_target, s.policy_timeout)
        self.pump = ReportPump(self, self.tick_interval)
        parts = self.reassembler.load()
        if parts:
            log.info("%d long-SMS parts waiting for the rest of their message", parts)
        host, _, port = s.gateway_listen.rpartition(":")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Session(self), host or "127.0.0.1",
                                                int(port), reuse_address=True)
        self._tasks = [loop.create_task(self.pump.run()), loop.create_task(self._ticker())]
        return self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        """Stop listening, end every connection with TERMINATE, release the daemon leases."""
        if self._server is not None:
            self._server.close()
        timeout = min(self.settings.response_timeout, 2.0)
        await asyncio.gather(*(s.terminate(timeout) for s in list(self.sessions)),
                             return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        leases = [s.session_id for s in self.sessions if s.session_id]
        await asyncio.gather(*(self.end_session(sid) for sid in leases), *self._ending,
                             return_exceptions=True)
        if self.client is not None:
            await self.client.close()
        self._record_acks()
        self.store.close()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            now = time.monotonic()
            for session in list(self.sessions):
                try:
                    session.tick(now)
                except Exception:  # noqa: BLE001 - one connection's timer must not stop the rest
                    log.exception("%s: timer failed; closing it", session.name)
                    session.abort("internal error")
            try:
                self._expire_parts(time.time())
            except Exception:  # noqa: BLE001 - the parts stay stored; the next tick retries
                log.exception("cannot store the reports of timed-out long SMS; retrying")

    # ------------------------------------------------------------------ sessions
    def logged_in(self, session: Session) -> None:
        self.accounts.setdefault(session.account_id, set()).add(session)
        try:
            self.store.rearm(session.account_id, self.settings.retries)
        except sqlite3.Error:
            log.exception("cannot re-arm reports of %s", session.account_id)
        self.pump.wake(session.account_id)

    def forget(self, session: Session) -> None:
        self.sessions.discard(session)
        live = self.accounts.get(session.account_id)
        if live is not None:
            live.discard(session)
            if not live:
                del self.accounts[session.account_id]
        if session.session_id:
            task = asyncio.get_running_loop().create_task(self.end_session(session.session_id))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)
            session.session_id = ""

    async def end_session(self, session_id: str) -> None:
        try:
            await self.client.end(session_id)
        except (PolicyUnavailable, PolicyRefused) as e:
            # the lease expires by itself after session_lease_seconds
            log.warning("cannot end session lease %s: %s", session_id, e)

    def acknowledged(self, account_id: str, deliver_msg_id: int) -> None:
        """A DELIVER_RESP Result 0. The acknowledgements read in one turn of the loop are
        recorded in one transaction (per account) right after it: one commit per report was
        most of the front-end's work once reports flowed. An acknowledgement not yet recorded
        when the process dies only means that report is sent again (the customer sees a
        duplicate, never a loss)."""
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._record_acks)
        self._acks.setdefault(account_id, []).append(deliver_msg_id)

    def _record_acks(self) -> None:
        acks, self._acks = self._acks, {}
        for account_id, ids in acks.items():
            try:
                self.store.ack_deliveries(account_id, ids)
            except sqlite3.Error:
                log.exception("cannot record %d DELIVER_RESP of %s; they will be resent",
                              len(ids), account_id)

    def platform_zone(self, name: str) -> ZoneInfo:
        """The zone a login answer named (the platform's); the current one if it names none
        or one this host does not know."""
        if name and name != self.zone.key:
            try:
                self.zone = ZoneInfo(name)
                log.info("platform time zone: %s", name)
            except (ZoneInfoNotFoundError, ValueError):
                log.error("the daemon names time zone %r, unknown here; keeping %s", name,
                          self.zone.key)
        return self.zone

    def query(self, account_id: str, q, zone: ZoneInfo | None = None) -> QueryResp:
        """CMPP_QUERY: Time is a day (YYYYMMDD) in the platform's zone; Query_Type 0 counts
        the account's traffic, 1 only that of the Service_Id in Query_Code (cmpp.md §8)."""
        zone = zone or self.zone
        try:
            day = datetime.strptime(q.time, "%Y%m%d").replace(tzinfo=zone)
        except ValueError:
            return QueryResp(q.sequence_id, q.time, q.query_type, q.query_code)
        if q.query_type not in (0, 1):
            return QueryResp(q.sequence_id, q.time, q.query_type, q.query_code)
        service_id = q.query_code if q.query_type == 1 else None
        end = (day + timedelta(days=1)).replace(tzinfo=zone)   # wall-clock day (DST zones)
        counts = self.store.query_counts(account_id, day.timestamp(), end.timestamp(), service_id)
        return QueryResp(q.sequence_id, q.time, q.query_type, q.query_code, **counts)

    # ------------------------------------------------------------------ the SUBMIT path
    async def submit(self, account_id: str, p: Submit, msg_ids: range) -> int:
        """The SUBMIT_RESP Result for one SUBMIT whose Msg_Ids are `msg_ids` (one per
        recipient, at least one)."""
        content, udh = p.msg_content, b""
        if len(content) > _max_content(p.msg_fmt):
            return BAD_LENGTH
        try:
            at = parse_smpp_time(p.at_time, time.time()) or 0.0
        except ValueError as e:
            log.info("%s: SUBMIT (Sequence_Id %d) with a malformed At_Time: %s", account_id,
                     p.sequence_id, e)
            return MALFORMED
        if udhi_set(p.tp_udhi):
            if not content or 1 + content[0] > len(content):
                return MALFORMED
            concat = parse_udh(content)
            if concat is not None and concat.total > 1:
                return await self._part(account_id, p, msg_ids, concat, at)
            if concat is not None:
                content = concat.payload
            else:  # some other UDH (ports, ...): forwarded as is, in front of the text
                udh, content = content[:1 + content[0]], content[1 + content[0]:]
        dests = p.dest_terminal_ids
        req = self._request(account_id, p, dests, content, msg_ids[0], msg_ids[:len(dests)], 1,
                            p.registered_delivery == 1)
        resp = await self._evaluate(req)
        if isinstance(resp, int):
            return resp
        if resp.submit_result:
            return resp.submit_result
        msg = Message(req.request_id, resp.decision_id, account_id, p.src_id, p.service_id,
                      p.msg_fmt, content, p.registered_delivery == 1, time.time(), udh, at)
        recipients = self._recipients(resp, [(m,) for m in msg_ids[:len(dests)]])
        if recipients is None:
            return FLOW_CONTROL
        return await self._store(msg, recipients, None)

    async def _part(self, account_id: str, p: Submit, msg_ids: range, concat, at: float) -> int:
        dests = tuple(p.dest_terminal_ids)
        key = message_key(account_id, p.src_id, dests, concat.ref, concat.total)
        now = time.time()
        part = Part(key, account_id, p.src_id, dests, concat.ref, concat.total, concat.seq,
                    tuple(msg_ids), concat.payload, p.msg_fmt, p.registered_delivery == 1,
                    p.service_id, p.fee_type, p.fee_code, now)
        offer, parts = self.reassembler.offer(part)
        if offer is Offer.BUFFERED:
            return OK
        if offer is Offer.REFUSED:
            log.info("%s: part %d/%d of message %d is a duplicate or inconsistent",
                     account_id, concat.seq, concat.total, concat.ref)
            if self.store.add_reports(part_reports([part], SEQUENCE_STAT, now)):
                self.pump.wake(account_id)
            return OK
        try:
            result = await self._complete(key, part, parts, at)
        except BaseException:
            self.reassembler.reopen(key)
            raise
        if result == FLOW_CONTROL:
            self.reassembler.reopen(key)
        else:
            self.reassembler.settle(key, time.time())
        return result

    async def _complete(self, key: str, last: Part, parts: list[Part], at: float) -> int:
        first = parts[0]
        content = b"".join(x.payload for x in parts)
        n = len(first.dests)
        ids = [tuple(x.msg_ids[i] for x in parts) for i in range(n)]
        wants_reports = any(x.registered_delivery for x in parts)
        req = self._request(first.account_id, first, first.dests, content, first.msg_ids[0],
                            first.msg_ids[:n], len(parts), wants_reports)
        resp = await self._evaluate(req)
        if isinstance(resp, int) and resp == FLOW_CONTROL:
            return resp
        now = time.time()
        if isinstance(resp, int) or resp.submit_result:
            result = resp if isinstance(resp, int) else resp.submit_result
            stat = TOO_LONG_STAT if result == BAD_LENGTH else UNDEFINED_STAT
            others = [x for x in parts if x is not last]
            if self.store.add_reports(part_reports(others, stat, now), parts_key=key):
                self.pump.wake(first.account_id)
            return result
        msg = Message(req.request_id, resp.decision_id, first.account_id, first.src_id,
                      first.service_id, first.msg_fmt, content, wants_reports,
                      min(x.received for x in parts), not_before=at)
        recipients = self._recipients(resp, ids)
        if recipients is None:
            return FLOW_CONTROL
        return await self._store(msg, recipients, key)

    def _request(self, account_id, p, dests, content, first_id, ids, parts, reports):
        return pb.EvaluateRequest(
            request_id=f"{self.settings.gateway_id}:{first_id}", account_id=account_id,
            frontend_id=self.settings.gateway_id, access_mode=pb.ACCESS_MODE_CMPP,
            src_id=p.src_id, destinations=dests, content=content, msg_fmt=p.msg_fmt,
            fee_code=p.fee_code, fee_type=p.fee_type, service_id=p.service_id,
            registered_delivery=reports, parts=parts, message_ids=[str(i) for i in ids])

    async def _evaluate(self, req: pb.EvaluateRequest) -> pb.EvaluateResponse | int:
        try:
            return await self.client.evaluate(req)
        except PolicyUnavailable as e:
            log.warning("%s not evaluated (%s): Result 8", req.request_id, e)
            return FLOW_CONTROL
        except PolicyRefused as e:
            log.info("%s refused by the daemon as malformed: %s", req.request_id, e)
            return MALFORMED

    def _recipients(self, resp, ids: list[tuple[int, ...]]) -> list[Recipient] | None:
        if len(resp.recipients) != len(ids):
            log.error("%s: the daemon decided %d recipients of %d; not stored (Result 8)",
                      resp.request_id, len(resp.recipients), len(ids))
            return None
        out = []
        for r, msg_ids in zip(resp.recipients, ids):
            action = _ACTIONS.get(r.action, "reject")
            out.append(Recipient(r.destination, msg_ids, action, r.channel_id, r.segments or 1,
                                 _stat(r.code) if action == "reject" else ""))
        return out

    async def _store(self, msg: Message, recipients: list[Recipient],
                     parts_key: str | None) -> int:
        """Group commit: the messages decided in one turn of the loop are stored in one
        transaction, and each SUBMIT_RESP waits for it."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._commits:
            loop.call_soon(self._commit)
        self._commits.append(((msg, recipients, parts_key), future))
        try:
            due = await future
        except sqlite3.Error:
            log.exception("%s: cannot store the decision; Result 8", msg.request_id)
            return FLOW_CONTROL
        if due:
            self.pump.wake(msg.account_id)
        return OK

    def _commit(self) -> None:
        batch, self._commits = self._commits, []
        try:
            results = self.store.accept_messages([item for item, _ in batch])
        except sqlite3.Error as error:
            # one bad message must not cost the others their place: store them one by one
            results = [error] if len(batch) == 1 else [self._accept_one(i) for i, _ in batch]
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _accept_one(self, item) -> int | sqlite3.Error:
        try:
            return self.store.accept_messages([item])[0]
        except sqlite3.Error as error:
            return error

    def _expire_parts(self, now: float) -> None:
        for key, parts in self.reassembler.expired(now):
            first = parts[0]
            log.info("%s: long SMS %d (%d of %d parts) timed out", first.account_id, first.ref,
                     len(parts), first.total)
            if self.store.add_reports(part_reports(parts, TIMEOUT_STAT, now), parts_key=key):
                self.pump.wake(first.account_id)
            self.reassembler.settle(key, now)
