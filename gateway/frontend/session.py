"""One customer CMPP connection: framing, login, the window, keep-alive, DELIVER and TERMINATE.

What the message path does with a SUBMIT lives in server.FrontEnd.submit; this class is the
protocol around it. Rules it enforces (cmpp.md §13, the issue):

* Before login only CONNECT is accepted; any other command closes the connection (there is no
  session to answer in). A CONNECT whose body has the wrong size is a login with
  `malformed=True` (Status 1). A refused login is answered, then the connection is closed.
  A daemon that cannot be asked refuses the login with Status 100: no customer gets in
  unchecked. CONNECT_RESP uses the customer's layout (1-byte Status for 2.x, 4 for 3.0) and,
  on success, names the customer's own version.
* At most `window` requests in flight: one more SUBMIT is answered at once with Result 8.
* Malformed frames: SUBMIT -> SUBMIT_RESP Result 1, CANCEL -> CANCEL_RESP 1, a DELIVER sent by the
  customer -> DELIVER_RESP Result 2 (that command is the gateway's); anything else undecodable,
  an unknown Command_Id, or a Total_Length outside 12..max_packet_size closes the connection.
* Timers (checked by FrontEnd.tick): no CONNECT within T, half a packet pending for T, nothing
  received for idle_timeout, a peer that stops reading our writes for T -> closed. Idle for C ->
  ACTIVE_TEST, resent after T, connection closed after N unanswered sends.
* TERMINATE from the customer: reading stops, SUBMITs in flight are answered, then
  TERMINATE_RESP and close. SUBMITs in flight when the connection drops still complete and are
  stored (the customer resends what it got no answer for: at least once, never lost).
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time
from datetime import datetime

from gateway.cmpp import (
    ActiveTest, ActiveTestResp, Cancel, CancelResp, CmppDecodeError, CmppEncodeError, Connect,
    ConnectResp, Deliver, DeliverResp, Query, Submit, SubmitResp, Terminate,
    TerminateResp, V20, decode, decode_connect, encode, is_v3, make_report_deliver,
)
from gateway.cmpp import constants as c
from policy.api.v1 import policy_pb2 as pb

from .policy_client import PolicyRefused, PolicyUnavailable

log = logging.getLogger("smspolicy.frontend")

_HEADER = struct.Struct(">III")
CONNECTING, LOGGING_IN, OPEN, TERMINATING, CLOSING, CLOSED = (
    "connecting", "logging-in", "open", "terminating", "closing", "closed")
_READING = (CONNECTING, OPEN, TERMINATING)
LOGIN_INTERNAL_ERROR = 100   # the daemon could not check the login: refuse, never guess
ALREADY_LOGGED_IN = 5        # a second CONNECT on a logged-in connection ("other")
FLOW_CONTROL = 8
MALFORMED = 1
WRONG_COMMAND = 2


class Session(asyncio.Protocol):
    def __init__(self, fe):
        self.fe = fe
        self.settings = fe.settings
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.peer_ip = ""
        self.state = CONNECTING
        self.version: int | None = None
        self.account_id = ""
        self.session_id = ""
        self.reports_pushed = False
        self.zone = fe.zone          # the platform's, as the login answer names it
        self.inflight = 0
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._max = self.settings.max_packet_size
        self._window = self.settings.window
        now = time.monotonic()
        self.opened = self.last_rx = self._last_renew = now
        self._partial_since: float | None = None
        self._paused_since: float | None = None
        self._seq = 0
        self._active_test: list | None = None     # [seq, last sent, sends]
        self._unacked: dict[int, float] = {}       # DELIVER Msg_Id -> when written
        self._terminate_seq: int | None = None     # the customer's TERMINATE, answered when idle
        self._terminated: asyncio.Future | None = None  # our TERMINATE's response
        self.tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer_ip, self.peer = peer[0], f"{peer[0]}:{peer[1]}"
        transport.set_write_buffer_limits(high=256 * 1024)
        self.fe.sessions.add(self)

    def connection_lost(self, exc) -> None:
        self.state = CLOSED
        self.fe.forget(self)
        if self._terminated is not None and not self._terminated.done():
            self._terminated.set_result(None)
        log.info("%s closed (%s)", self.name, exc or "normally")

    def pause_writing(self) -> None:
        # the peer does not read our answers: stop reading its requests too (memory stays
        # bounded), and close it if this lasts T (tick)
        self._paused_since = time.monotonic()
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused_since = None
        if self._partial_since is not None:  # the peer could not send while we did not read
            self._partial_since = time.monotonic()
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self._buf += data
        if self.state == LOGGING_IN and len(self._buf) > self._max:
            self.abort("floods while its login is being checked")
            return
        self._drain()

    @property
    def name(self) -> str:
        return f"{self.account_id or '-'}@{self.peer}"

    # ------------------------------------------------------------------ framing
    def _drain(self) -> None:
        buf, pos = self._buf, 0
        # a CONNECT waiting for the daemon keeps later bytes unread until the login is decided
        while self.state in _READING and len(buf) - pos >= 12:
            total, cmd, seq = _HEADER.unpack_from(buf, pos)
            if not 12 <= total <= self._max:
                self.abort(f"Total_Length {total} outside 12..{self._max} "
                           f"({c.command_name(cmd)}, Sequence_Id {seq})")
                return
            if len(buf) - pos < total:
                break
            frame = bytes(buf[pos:pos + total])
            pos += total
            self._active_test = None  # any packet shows the peer is alive
            try:
                self._frame(frame, cmd, seq)
            except Exception:  # noqa: BLE001 - our bug or a broken store: this connection only
                log.exception("%s: %s failed", self.name, c.command_name(cmd))
                self.abort("internal error")
                return
        if pos:
            del buf[:pos]
            self._partial_since = None
        if buf and self._partial_since is None:
            self._partial_since = time.monotonic()

    def _frame(self, frame: bytes, cmd: int, seq: int) -> None:
        if self.state == CONNECTING:
            if cmd != c.CONNECT:
                self.abort(f"{c.command_name(cmd)} before CMPP_CONNECT")
                return
            self.state = LOGGING_IN
            try:
                connect, malformed = decode_connect(frame), False
            except CmppDecodeError as e:
                log.info("%s sent a malformed CONNECT: %s", self.name, e)
                connect, malformed = _salvage_connect(frame, seq), True
            self._spawn(self._guarded_login(connect, malformed))
            return
        try:
            packet = decode(frame, self.version)
        except CmppDecodeError as e:
            self._malformed(cmd, seq, e)
            return
        kind = type(packet)
        if kind is Submit:
            self._on_submit(packet)
        elif kind is DeliverResp:
            self._on_deliver_resp(packet)
        elif kind is ActiveTest:
            self.write(ActiveTestResp(seq))
        elif kind is ActiveTestResp:
            pass  # _drain cleared the pending ACTIVE_TEST
        elif kind is Terminate:
            self._on_terminate(seq)
        elif kind is TerminateResp:
            if self._terminated is not None and not self._terminated.done():
                self._terminated.set_result(None)
        elif kind is Query:
            self.write(self.fe.query(self.account_id, packet, self.zone))
        elif kind is Cancel:
            ok = self.fe.store.cancel(self.account_id, packet.msg_id)
            self.write(CancelResp(seq, 0 if ok else 1))
        elif kind is Connect:
            self.write(ConnectResp(seq, ALREADY_LOGGED_IN, bytes(16), self.version))
        elif kind is Deliver:
            self.write(DeliverResp(seq, packet.msg_id, WRONG_COMMAND))
        else:  # a response to nothing we sent
            log.debug("%s: unexpected %s ignored", self.name, kind.__name__)

    def _malformed(self, cmd: int, seq: int, error: CmppDecodeError) -> None:
        log.info("%s: malformed packet: %s", self.name, error)
        if cmd == c.SUBMIT:
            self.write(SubmitResp(seq, 0, MALFORMED))
        elif cmd == c.CANCEL:
            self.write(CancelResp(seq, 1))
        elif cmd == c.DELIVER:
            self.write(DeliverResp(seq, 0, WRONG_COMMAND))
        else:
            self.abort(f"cannot decode {c.command_name(cmd)}: {error}")

    # ------------------------------------------------------------------ writing
    def write(self, packet) -> None:
        """Queue a packet; everything queued in one turn of the loop goes out in one send."""
        if self.transport is None or self.state == CLOSED or self.transport.is_closing():
            return
        try:
            data = encode(packet, self.version or V20)
        except CmppEncodeError:
            log.exception("%s: cannot encode %r", self.name, packet)
            return
        self._write_encoded(data)

    def _write_encoded(self, data: bytes) -> None:
        if self.transport is None or self.state == CLOSED or self.transport.is_closing():
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self.flush)
        self._out.append(data)

    def flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def next_seq(self) -> int:
        self._seq = self._seq % 0xFFFFFFFF + 1
        return self._seq

    def abort(self, reason: str) -> None:
        if self.state != CLOSED and self.transport is not None:
            log.info("%s: closing: %s", self.name, reason)
            self.state = CLOSING
            self.transport.abort()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------------ login
    async def _guarded_login(self, p: Connect, malformed: bool) -> None:
        try:
            await self._login(p, malformed)
        except Exception:  # noqa: BLE001 - e.g. a status the customer's layout cannot carry
            log.exception("%s: login of %r failed", self.name, p.source_addr)
            self.abort("internal error during login")

    async def _login(self, p: Connect, malformed: bool) -> None:
        req = pb.LoginRequest(account_id=p.source_addr, authenticator_source=p.authenticator_source,
                              timestamp=p.timestamp, version=p.version, peer_ip=self.peer_ip,
                              access_mode=pb.ACCESS_MODE_CMPP, frontend_id=self.settings.gateway_id,
                              malformed=malformed)
        server_version = p.version
        try:
            resp = await self.fe.client.login(req)
            status, ismg, server_version = resp.status, resp.authenticator_ismg, resp.server_version
        except (PolicyUnavailable, PolicyRefused) as e:
            log.warning("%s: login of %r not checked, refused with %d: %s", self.name,
                        p.source_addr, LOGIN_INTERNAL_ERROR, e)
            status, ismg = LOGIN_INTERNAL_ERROR, b""
            resp = None
        try:
            is_v3(p.version)
            layout = p.version
        except ValueError:
            layout = V20  # an unknown version byte is answered in the 2.x layout
            if status == 0:  # the daemon must have refused it; never open an undecodable link
                status = 4
        if status == 0:
            # speak the customer's version: some clients switch codecs on CONNECT_RESP.Version
            answer_version = min(p.version, server_version or p.version)
        else:
            answer_version = server_version or p.version
        if len(ismg) != 16:
            ismg = bytes(16)
        if self.state == CLOSED or self.transport.is_closing():  # the customer left meanwhile
            if status == 0 and resp.session_id:
                await self.fe.end_session(resp.session_id)
            return
        self.transport.write(encode(ConnectResp(p.sequence_id, status, ismg, answer_version), layout))
        if status != 0:
            log.info("%s: login of %r refused with %d (%s)", self.name, p.source_addr, status,
                     resp.reason if resp else "daemon unavailable")
            self.state = CLOSING
            self.transport.close()  # after the CONNECT_RESP is written
            return
        self.state, self.version, self.account_id = OPEN, p.version, p.source_addr
        self.session_id = resp.session_id
        self.reports_pushed = resp.reports_pushed  # the forwarder's pusher delivers them
        self.zone = self.fe.platform_zone(resp.timezone)
        self._last_renew = time.monotonic()
        self._lease = resp.lease_seconds or self.settings.session_lease_seconds
        log.info("%s: logged in (CMPP 0x%02x)", self.name, p.version)
        self.fe.logged_in(self)
        self._drain()

    async def renew(self) -> None:
        try:
            kept = await self.fe.client.renew(self.session_id, self.account_id)
        except (PolicyUnavailable, PolicyRefused) as e:
            log.warning("%s: cannot renew session lease: %s", self.name, e)
            return
        if not kept and self.state == OPEN:
            # the daemon lost the lease (it restarted) and the account's other connections took
            # every slot meanwhile: a connection without a lease would break max_connections
            log.warning("%s: session lease %s lost and the account has no connection left: "
                        "closing", self.name, self.session_id)
            await self.terminate(self.settings.response_timeout)

    # ------------------------------------------------------------------ SUBMIT
    def _on_submit(self, p: Submit) -> None:
        if self.inflight >= self._window or self.state != OPEN:
            self.write(SubmitResp(p.sequence_id, 0, FLOW_CONTROL))
            return
        self.inflight += 1
        self._spawn(self._submit(p))

    async def _submit(self, p: Submit) -> None:
        msg_id, result = 0, FLOW_CONTROL
        try:
            msg_ids = self.fe.msgids.next_block(max(1, len(p.dest_terminal_ids)))
            msg_id = msg_ids[0]
            result = await self.fe.submit(self.account_id, p, msg_ids)
        except Exception:  # noqa: BLE001 - one message's failure must not take the connection
            log.exception("%s: SUBMIT (Sequence_Id %d) failed", self.name, p.sequence_id)
        finally:
            self.inflight -= 1
        self.write(SubmitResp(p.sequence_id, msg_id, result))
        if self._terminate_seq is not None and self.inflight == 0:
            self._finish_terminate()

    # ------------------------------------------------------------------ DELIVER
    def delivery_capacity(self) -> int:
        if self.state != OPEN:
            return 0
        return self._window - len(self._unacked)

    def send_report(self, row, deliver_msg_id: int) -> bool:
        """Write the DELIVER of a stored report. False, having written nothing, when it cannot
        be encoded for this connection (the caller marks the report failed, never sent)."""
        try:
            packet = make_report_deliver(
                self.next_seq(), deliver_msg_id, row.msg_id, row.stat,
                datetime.fromtimestamp(row.submit_time, self.zone),
                datetime.fromtimestamp(row.done_time, self.zone),
                row.dest, 0, row.src_id, row.service_id, self.version)
            data = encode(packet, self.version)
        except CmppEncodeError as e:
            log.error("%s: report %d (Msg_Id %d to %s) cannot be encoded for CMPP 0x%02x, it "
                      "will not be delivered: %s", self.name, row.id, row.msg_id, row.dest,
                      self.version, e)
            return False
        self._write_encoded(data)
        self._unacked[deliver_msg_id] = time.monotonic()
        return True

    def send_mo(self, row, deliver_msg_id: int) -> bool:
        """Like send_report, for a stored MO message."""
        try:
            data = encode(Deliver(self.next_seq(), deliver_msg_id, row.dest_id, row.service_id, 0,
                                  row.tp_udhi, row.msg_fmt, row.src_terminal_id, 0, 0,
                                  row.content), self.version)
        except CmppEncodeError as e:
            log.error("%s: MO %d cannot be encoded for CMPP 0x%02x, it will not be delivered: %s",
                      self.name, row.id, self.version, e)
            return False
        self._write_encoded(data)
        self._unacked[deliver_msg_id] = time.monotonic()
        return True

    def _on_deliver_resp(self, p: DeliverResp) -> None:
        if self._unacked.pop(p.msg_id, None) is not None:
            self.fe.pump.room_freed(self.account_id)
        if p.result == 0:
            self.fe.acknowledged(self.account_id, p.msg_id)
        else:  # kept: the pump resends it after report_resend
            log.info("%s: DELIVER %d answered with Result %d", self.name, p.msg_id, p.result)

    # ------------------------------------------------------------------ TERMINATE
    def _on_terminate(self, seq: int) -> None:
        self.state = CLOSING  # read nothing more; answer what is in flight first
        self._terminate_seq = seq
        if self.inflight == 0:
            self._finish_terminate()

    def _finish_terminate(self) -> None:
        self.write(TerminateResp(self._terminate_seq))
        self.flush()
        if self.transport is not None:
            self.transport.close()
        self._terminate_seq = None

    async def terminate(self, timeout: float) -> None:
        """Our side ends the connection (shutdown): answer what is in flight, send TERMINATE,
        wait for TERMINATE_RESP up to `timeout`, close."""
        if self.state == OPEN:
            self.state = TERMINATING  # still reading: DELIVER_RESP, TERMINATE_RESP
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=timeout)
            self._terminated = asyncio.get_running_loop().create_future()
            self.write(Terminate(self.next_seq()))
            try:
                await asyncio.wait_for(self._terminated, timeout)
            except asyncio.TimeoutError:
                pass
        self.flush()
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ timers
    def tick(self, now: float) -> None:
        s = self.settings
        if self.state == CLOSED:
            return
        if self._paused_since is not None:  # we are not reading: only this timer applies
            if now - self._paused_since > s.response_timeout:
                self.abort("not reading what we send")
        elif self.state == CONNECTING and now - self.opened > s.response_timeout:
            self.abort("no CMPP_CONNECT")
        elif self._partial_since is not None and now - self._partial_since > s.response_timeout:
            self.abort("half a packet pending")
        elif now - self.last_rx > s.idle_timeout:
            self.abort(f"nothing received for {s.idle_timeout:g} s")
        elif self.state == OPEN:
            self._keepalive(now)
            stale = now - s.report_resend
            for mid in [m for m, t in self._unacked.items() if t < stale]:
                del self._unacked[mid]
            if self.session_id and now - self._last_renew > self._lease / 3:
                self._last_renew = now
                self._spawn(self.renew())

    def _keepalive(self, now: float) -> None:
        s = self.settings
        pending = self._active_test
        if pending is None:
            if now - self.last_rx > s.active_test_interval:
                self._active_test = [self.next_seq(), now, 1]
                self.write(ActiveTest(self._active_test[0]))
        elif now - pending[1] > s.response_timeout:
            if pending[2] >= s.retries:
                self.abort(f"{pending[2]} ACTIVE_TEST unanswered")
            else:
                pending[1] = now
                pending[2] += 1
                self.write(ActiveTest(pending[0]))


def _salvage_connect(frame: bytes, seq: int) -> Connect:
    """What can be read of a CONNECT of the wrong size, to answer it in the right layout and
    log the account it claims."""
    body = frame[12:]
    addr = body[:6].partition(b"\0")[0].decode("latin-1")
    version = body[22] if len(body) > 22 else V20
    return Connect(seq, addr, bytes(16), version, 0)
