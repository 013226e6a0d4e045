"""The CMPP login policy, shared by every front-end (CONNECT_RESP.Status codes of the seed table).

Order of checks (the first failing one answers): 1 malformed packet, 3 unknown account,
6 access mode, 4 version, 2 bound IP, 3 authenticator (CMPP) or request signature (HTTP) / stale
timestamp, 7 account disabled, 5 account unusable (no channel to route to), 15 prepaid balance,
16 login time window, 21 too many connections, 100 internal error.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from gateway.cmpp.auth import authenticator_ismg, authenticator_source, timestamp_to_datetime

from ..rules.model import Account

log = logging.getLogger("smspolicy.login")

OK, MALFORMED, BAD_IP, AUTH, VERSION, OTHER, ACCESS_POINT, STATUS = 0, 1, 2, 3, 4, 5, 6, 7
BALANCE, TIME_WINDOW, TOO_MANY, INTERNAL = 15, 16, 21, 100
SERVER_VERSION = 0x30


@dataclass
class LoginResult:
    status: int
    reason: str
    authenticator_ismg: bytes = b""
    session_id: str = ""
    lease_seconds: int = 0
    server_version: int = SERVER_VERSION
    reports_pushed: bool = False
    access_code: str = ""
    timezone: str = ""           # the platform's IANA time zone (status 0 only)


class Sessions:
    """Connection leases per account, so max_connections holds across all front-ends of this
    daemon. Daemons that share their counters share the leases too, in the same place
    (policy.daemon.redis_sessions, policy.daemon.sqlite_sessions; see make_sessions)."""

    def __init__(self, lease_seconds: int):
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[str, float]] = {}

    def _live(self, account_id: str, now: float) -> int:
        expired = [sid for sid, (_, exp) in self._by_id.items() if exp <= now]
        for sid in expired:
            del self._by_id[sid]
        return sum(1 for acc, _ in self._by_id.values() if acc == account_id)

    def open(self, account_id: str, limit: int, now: float) -> str | None:
        with self._lock:
            if self._live(account_id, now) >= limit:
                return None
            sid = uuid.uuid4().hex
            self._by_id[sid] = (account_id, now + self.lease_seconds)
            return sid

    def renew(self, session_id: str, now: float, account_id: str = "", limit: int = 0) -> bool:
        """Extend a lease. A lease this daemon does not hold (it restarted: leases live in
        memory, or the lease ran out) is taken back for `account_id` while the account is under
        `limit`: the connection is still open at its front-end and counts."""
        with self._lock:
            entry = self._by_id.get(session_id)
            if entry is None or entry[1] <= now:
                self._by_id.pop(session_id, None)
                if not session_id or not account_id or self._live(account_id, now) >= limit:
                    return False
                entry = (account_id, 0.0)
            self._by_id[session_id] = (entry[0], now + self.lease_seconds)
            return True

    def end(self, session_id: str) -> bool:
        with self._lock:
            return self._by_id.pop(session_id, None) is not None

    def close(self) -> None:
        """Nothing to release (the shared forms close their connections)."""


class LoginPolicy:
    def __init__(self, runtime, sessions: Sessions, counters=None, clock_skew: int = 300,
                 clock=time.time):
        self.runtime = runtime
        self.sessions = sessions
        self.counters = counters
        self.clock_skew = clock_skew
        self.clock = clock

    def renew(self, session_id: str, account_id: str = "") -> bool:
        """RenewSession: see Sessions.renew; an account the rules no longer hold gets nothing back."""
        account = self.runtime.current().policy.accounts.get(account_id) if account_id else None
        return self.sessions.renew(session_id, self.clock(), account.id if account else "",
                                   account.max_connections if account else 0)

    def login(self, account_id: str, auth_source: bytes, timestamp: int, version: int,
              peer_ip: str, access_mode: str, malformed: bool = False,
              http_signature: bytes = b"", http_string_to_sign: str = "") -> LoginResult:
        try:
            return self._login(account_id, auth_source, timestamp, version, peer_ip, access_mode,
                               malformed, http_signature, http_string_to_sign)
        except Exception:  # noqa: BLE001 - a store behind the login failed: say so, keep serving
            log.exception("login of %r failed", account_id)
            return LoginResult(INTERNAL, "internal error")

    def _login(self, account_id, auth_source, timestamp, version, peer_ip, access_mode,
               malformed, http_signature, http_string_to_sign) -> LoginResult:
        if malformed:
            return LoginResult(MALFORMED, "malformed CONNECT packet")
        loaded = self.runtime.current()
        account: Account | None = loaded.policy.accounts.get(account_id)
        if account is None:
            return LoginResult(AUTH, "unknown account")
        if account.access_mode != access_mode:
            return LoginResult(ACCESS_POINT, f"account is opened for {account.access_mode} access")
        if access_mode == "cmpp" and version not in account.cmpp_versions:
            return LoginResult(VERSION, f"CMPP version 0x{version:02x} not enabled for the account")
        if account.bound_ips and not _ip_allowed(peer_ip, account.bound_ips):
            return LoginResult(BAD_IP, f"address {peer_ip} is not bound to the account")
        now = self.clock()
        local_now = datetime.fromtimestamp(now, loaded.tz)
        if access_mode == "cmpp":
            if auth_source != authenticator_source(account.id, account.secret, timestamp):
                return LoginResult(AUTH, "authenticator does not match")
            try:
                skew = abs((timestamp_to_datetime(timestamp, local_now) - local_now).total_seconds())
            except ValueError:
                skew = float("inf")
            # A captured CONNECT replays only within the skew; an exact-authenticator guard would
            # refuse the several connections a client opens in the same second.
            if skew > self.clock_skew:
                return LoginResult(AUTH, "timestamp too far from the gateway's clock")
        else:
            refused = _http_signature_refused(account.secret, http_signature, http_string_to_sign,
                                              timestamp, now, self.clock_skew)
            if refused:
                return LoginResult(AUTH, refused)
        if account.status != "active":
            return LoginResult(STATUS, "account is disabled")
        if not account.channels:
            return LoginResult(OTHER, "account has no channel to send through")
        if account.billing == "prepaid" and self.counters is not None:
            balance = self.counters.balance(account.id)
            if balance is not None and balance <= 0:
                return LoginResult(BALANCE, "prepaid balance exhausted")
        if account.login_window and not account.login_window.contains(local_now.time()):
            return LoginResult(TIME_WINDOW, "outside the account's login window")
        session = self.sessions.open(account.id, account.max_connections, now)
        if session is None:
            return LoginResult(TOO_MANY, f"more than {account.max_connections} connections")
        ismg = authenticator_ismg(OK, auth_source, account.secret, version) if access_mode == "cmpp" else b""
        return LoginResult(OK, "ok", ismg, session, self.sessions.lease_seconds,
                           reports_pushed=bool(account.push_url), access_code=account.access_code,
                           timezone=loaded.policy.platform.timezone)


def _http_signature_refused(secret: str, signature: bytes, string_to_sign: str, timestamp: int,
                            now: float, clock_skew: int) -> str:
    """Why an HTTP request's signature is refused, or "" when it holds. The signed string's
    third line is its time stamp (docs/http-api.md): checking that it is the `timestamp` whose
    skew is checked keeps an old signed request from passing with a fresh time."""
    expected = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        return "request signature does not match"
    lines = string_to_sign.split("\n")
    if len(lines) < 3 or lines[2] != str(timestamp):
        return "the signed time stamp is not the request's"
    if abs(now - timestamp) > clock_skew:
        return "request time stamp too far from the gateway's clock"
    return ""


def _ip_allowed(peer_ip: str, bound: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(net, strict=False) for net in bound)
