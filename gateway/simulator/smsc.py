"""An upstream SMSC (ISMG) on asyncio that speaks CMPP 2.x and 3.0 to our forwarder.

It checks logins against its accounts, answers SUBMITs with Msg_Ids of its own, sends a status
report per recipient after a delay, sends MO messages on request, and injects the faults that
faults.FaultPlan picks. DELIVERs (reports and MO) are kept per account until the SP answers
them with DELIVER_RESP: unanswered ones go back to the account's queue when the connection
drops and are sent again on the next login, as a real ISMG resends them.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime

from gateway.cmpp import (
    ActiveTest, ActiveTestResp, CmppDecodeError, Connect, ConnectResp, Deliver, DeliverResp,
    Framer, MsgIdGenerator, Submit, SubmitResp, Terminate, TerminateResp, V30,
    authenticator_ismg, authenticator_source, decode_content, encode, encode_content, is_v3,
    make_report_deliver, parse_udh, udhi_set,
)

from .faults import FaultPlan

log = logging.getLogger("gateway.simulator")

# CONNECT_RESP.Status values (cmpp.md §12)
_BAD_SOURCE, _BAD_AUTH, _VERSION_TOO_HIGH = 2, 3, 4
_SUBMITS_KEPT = 10000  # the control port's `submits` history; enough for any test run


@dataclass(frozen=True)
class Report:
    submit_msg_id: int
    stat: str
    submit_time: datetime
    dest_terminal_id: str
    dest_id: str  # the SUBMIT's Src_Id
    service_id: str
    # set when the report falls due, and kept: a resent DELIVER is the same DELIVER
    done_time: datetime | None = None
    smsc_sequence: int = 0
    deliver_msg_id: int = 0


@dataclass(frozen=True)
class Mo:
    src_terminal_id: str
    dest_id: str
    text: str
    deliver_msg_id: int


@dataclass
class SubmitRecord:
    """One SUBMIT as received, for the control port's `submits` (tests inspect these)."""
    index: int
    account: str
    msg_ids: list[int]
    dests: list[str]
    text: str
    pk_total: int
    pk_number: int
    concat: tuple[int, int, int] | None  # (ref, total, seq) from the UDH
    registered_delivery: int
    fault: str | None
    result: int | None  # None while unanswered (or never: noresp/drop)
    received: float  # time.monotonic()

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Stats:
    logins: int = 0
    login_failures: int = 0
    submits: int = 0
    reports_sent: int = 0
    mo_sent: int = 0
    drops: int = 0
    active_tests: int = 0
    by_account: dict[str, int] = field(default_factory=dict)
    # per account, the most SUBMITs received on one connection and not yet answered
    max_in_flight: dict[str, int] = field(default_factory=dict)


class Simulator:
    def __init__(self, accounts: dict[str, str], *, version: int = V30, report_delay: float = 0.2,
                 plan: FaultPlan, gateway_code: int = 7, max_packet_size: int = 4096):
        is_v3(version)
        self.accounts = dict(accounts)
        self.version = version
        self.report_delay = report_delay
        self.plan = plan
        self.max_packet_size = max_packet_size
        self.msg_ids = MsgIdGenerator(gateway_code)
        self.stats = Stats()
        self.submits: deque[SubmitRecord] = deque(maxlen=_SUBMITS_KEPT)
        self._submit_index = itertools.count()
        self._sessions: dict[str, list[_Session]] = {}
        self._pending: dict[str, deque[Report | Mo]] = {}
        self._smsc_sequence = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port)
        return self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        if self._server:
            self._server.close()
        for session in [s for group in self._sessions.values() for s in group]:
            session.abort()
        if self._server:
            await self._server.wait_closed()

    # ---- called by the control port ---------------------------------------------------------

    def connections(self) -> dict[str, int]:
        return {acc: len(group) for acc, group in self._sessions.items() if group}

    def pending(self) -> dict[str, int]:
        return {acc: len(q) for acc, q in self._pending.items() if q}

    def send_mo(self, account: str, src_terminal_id: str, dest_id: str, text: str) -> None:
        if account not in self.accounts:
            raise ValueError(f"unknown account {account!r}")
        if len(encode_content(text, 8)) > 140:
            raise ValueError(f"MO text has {len(text)} characters; one UCS2 SMS holds 70")
        self._enqueue(account, Mo(src_terminal_id, dest_id, text, self.msg_ids.next()))

    def drop(self, account: str | None = None) -> int:
        victims = [s for acc, group in self._sessions.items() if account in (None, acc)
                   for s in group]
        for session in victims:
            session.abort()
        return len(victims)

    # ---- internals --------------------------------------------------------------------------

    async def _accept(self, reader, writer) -> None:
        await _Session(self, reader, writer).run()

    def _attach(self, session: _Session) -> None:
        self._sessions.setdefault(session.account, []).append(session)
        self._flush(session.account)

    def _detach(self, session: _Session) -> None:
        group = self._sessions.get(session.account, [])
        if session in group:
            group.remove(session)
        # unanswered DELIVERs go back to the front of the queue for the next connection
        queue = self._pending.setdefault(session.account, deque())
        queue.extendleft(reversed(list(session.unacked.values())))
        session.unacked.clear()
        self._flush(session.account)

    def _enqueue(self, account: str, item: Report | Mo) -> None:
        self._pending.setdefault(account, deque()).append(item)
        self._flush(account)

    def _flush(self, account: str) -> None:
        queue = self._pending.get(account)
        group = [s for s in self._sessions.get(account, ()) if not s.closed]
        if not queue or not group:
            return
        # spread over the account's connections, as an ISMG does
        for i in itertools.count():
            if not queue:
                break
            group[i % len(group)].send_deliver(queue.popleft())

    def _report_later(self, account: str, report: Report) -> None:
        def due():
            self._enqueue(account, replace(report, done_time=datetime.now(),
                                           smsc_sequence=next(self._smsc_sequence) & 0xFFFFFFFF,
                                           deliver_msg_id=self.msg_ids.next()))

        asyncio.get_running_loop().call_later(self.report_delay, due)


class _Session:
    def __init__(self, sim: Simulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.account = ""
        self.version: int | None = None
        self.unacked: dict[int, Report | Mo] = {}
        self.in_flight = 0
        self._seq = itertools.count(1)
        self.closed = False

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.transport.abort()

    async def run(self) -> None:
        framer = Framer(None, self.sim.max_packet_size)
        try:
            while not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    break
                framer.feed(data)
                for packet in framer:
                    if self.version is None:
                        if not self._login(packet):
                            return
                        framer.version = self.version
                    else:
                        self._handle(packet)
                    if self.closed:
                        return
        except CmppDecodeError as e:
            # Lenient peers are the forwarder's business, not the simulator's: any malformed
            # frame ends the connection, which the forwarder must survive anyway.
            log.warning("closing connection of %s: %s", self.account or "?", e)
        except (ConnectionError, OSError):
            pass
        finally:
            if self.version is not None:
                self.sim._detach(self)
            self.abort()

    def _write(self, packet) -> None:
        if not self.closed:
            self.writer.write(encode(packet, self.version))

    def _login(self, packet: Connect) -> bool:
        sim = self.sim
        secret = sim.accounts.get(packet.source_addr)
        try:
            client_v3 = is_v3(packet.version)
        except ValueError:
            client_v3 = None
        version = packet.version if client_v3 is not None else sim.version
        status = 0
        if secret is None:
            status = _BAD_SOURCE
        elif packet.authenticator_source != authenticator_source(packet.source_addr, secret,
                                                                 packet.timestamp):
            status = _BAD_AUTH
        elif client_v3 is None or (client_v3 and not is_v3(sim.version)):
            status, version = _VERSION_TOO_HIGH, sim.version
        self.version = version
        auth = (authenticator_ismg(0, packet.authenticator_source, secret, version)
                if status == 0 else bytes(16))
        self._write(ConnectResp(packet.sequence_id, status, auth, sim.version))
        if status:
            sim.stats.login_failures += 1
            log.info("login refused for %r: status %d", packet.source_addr, status)
            self.version = None
            self.abort()
            return False
        self.account = packet.source_addr
        sim.stats.logins += 1
        sim._attach(self)
        return True

    def _handle(self, packet) -> None:
        kind = type(packet)
        if kind is Submit:
            self._submit(packet)
        elif kind is DeliverResp:
            self.unacked.pop(packet.sequence_id, None)
        elif kind is ActiveTest:
            self.sim.stats.active_tests += 1
            self._write(ActiveTestResp(packet.sequence_id))
        elif kind is Terminate:
            self._write(TerminateResp(packet.sequence_id))
            self.abort()
        # ActiveTestResp and anything else need no answer

    def _submit(self, p: Submit) -> None:
        sim = self.sim
        content, concat = p.msg_content, None
        if udhi_set(p.tp_udhi):
            parsed = parse_udh(content)
            if parsed:
                concat, content = (parsed.ref, parsed.total, parsed.seq), parsed.payload
        text = decode_content(content, p.msg_fmt)
        outcome = sim.plan.outcome(text)
        fault = outcome.fault
        record = SubmitRecord(next(sim._submit_index), self.account, [], list(p.dest_terminal_ids),
                              text, p.pk_total, p.pk_number, concat, p.registered_delivery,
                              str(fault) if fault else None, None, time.monotonic())
        sim.submits.append(record)
        sim.stats.submits += 1
        sim.stats.by_account[self.account] = sim.stats.by_account.get(self.account, 0) + 1
        kind = fault.kind if fault else None
        if kind == "drop":
            sim.stats.drops += 1
            self.abort()
            return
        self.in_flight += 1
        peaks = sim.stats.max_in_flight
        peaks[self.account] = max(peaks.get(self.account, 0), self.in_flight)
        if kind == "noresp":
            return
        ids = sim.msg_ids.next_block(max(1, len(p.dest_terminal_ids)))
        record.msg_ids = list(ids)
        result = fault.value if kind == "result" else 0
        if kind == "delay":
            asyncio.get_running_loop().call_later(fault.value, self._answer, p, ids, result,
                                                  outcome.stat, record)
        else:
            self._answer(p, ids, result, outcome.stat, record)

    def _answer(self, p: Submit, ids: range, result: int, stat: str | None,
                record: SubmitRecord) -> None:
        if self.closed:
            return
        self.in_flight -= 1
        record.result = result
        self._write(SubmitResp(p.sequence_id, ids[0], result))
        if result or p.registered_delivery != 1:
            return
        now = datetime.now()
        for msg_id, dest in zip(ids, p.dest_terminal_ids):
            report = Report(msg_id, stat or self.sim.plan.report_stat(), now, dest, p.src_id,
                            p.service_id)
            self.sim._report_later(self.account, report)

    def send_deliver(self, item: Report | Mo) -> None:
        sim = self.sim
        seq = next(self._seq) & 0xFFFFFFFF
        if isinstance(item, Report):
            deliver = make_report_deliver(
                seq, item.deliver_msg_id, item.submit_msg_id, item.stat, item.submit_time,
                item.done_time, item.dest_terminal_id, item.smsc_sequence, item.dest_id,
                item.service_id, self.version)
            sim.stats.reports_sent += 1
        else:
            deliver = Deliver(seq, item.deliver_msg_id, dest_id=item.dest_id, msg_fmt=8,
                              src_terminal_id=item.src_terminal_id,
                              msg_content=encode_content(item.text, 8))
            sim.stats.mo_sent += 1
        self.unacked[seq] = item
        self._write(deliver)
