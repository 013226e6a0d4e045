"""Soak with faults (issue 8): the whole chain on loopback while processes die.

Real processes: the daemon (`smspolicy serve`), the front-end (`smspolicy gateway`), the forwarder
and the upstream simulator, each on free loopback ports, on a copy of the shipped rules that
points the channels at the simulator and adds a prepaid soak account with a known balance.
Eight CMPP customer connections (the tests' own client) send single, group and long (UDH)
messages with Registered_Delivery 1 and acknowledge every DELIVER. A fault task kills -9 and
restarts the front-end, the forwarder and the daemon, drops the upstream links and makes the
simulator answer late, at moments drawn from a seeded generator (by progress, so a plan is
reproducible whatever the machine's speed).

What a customer knows decides what is checked. A SUBMIT without SUBMIT_RESP is unknown to the
customer (the front-end may have stored it before dying), so it is sent again as a new message,
as a real SP does, and reports for Msg_Ids the customer was never told are counted as "maybe",
never as errors. Assertions only concern SUBMITs whose SUBMIT_RESP arrived:

* Result 0: exactly one final report per recipient, per part for long messages (Msg_Id of
  recipient i = SUBMIT_RESP Msg_Id + i, S3 Appendix 1). A report is identified by
  (Msg_Id, Dest_terminal_Id). A *duplicate* is a second, different DELIVER for one identity
  (another DELIVER Msg_Id or another Stat). The same DELIVER (same DELIVER Msg_Id) arriving
  again is at-least-once delivery doing its job after a DELIVER_RESP was lost in a crash: it is
  counted, not a failure.
* Result != 0: no report at all for its Msg_Ids.
* Balances and counters: the prepaid debit equals price x the account's segment counter, the
  channel-number counters add up to the recipients charged, and the debit equals the sum of the charges
  the counter store keeps with their request ids. It lies between what the Result-0 recipients
  imply and that plus the charges of request ids the customer was never told were accepted
  ("orphan charges": the daemon charged, then the front-end died before storing the message,
  or the answer was lost and the customer got Result 8; the resubmission is charged again).
* Every Result-0 single or group submit was charged under its own request id and is in the
  decision log; `smspolicy audit verify` passes. Charges without a log record (the daemon
  killed between the two commits, never answered) are counted, not failed.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.cmpp import V21, Submit, parse_report, split_ucs2
from tests.forwarder.support import ForwarderProc
from tests.frontend.cmpp_client import CmppClient, ServerClosed
from tests.simulator.support import SimulatorProc
from tests.support.procs import REPO, SHIPPED_RULES, DaemonProc, Proc, free_port

ACCOUNT, SECRET, SRC = "910001", "soak-910001", "1069101"
OPENING_BALANCE, PRICE = 1_000_000_000, 5
SIG = "【云信科技】"
BLACKLISTED = "13900000003"   # rules/lists/global-blacklist.txt: its recipient gets MA:0001
GATEWAY_ID = "soak"
PREFIXES = ("1381234", "1301234", "1891234")   # one per carrier: ch-cmcc, ch-cucc, ch-ctcc

SOAK_ACCOUNT = f"""
  # added by tests/soak: a prepaid account whose balance the soak checks
  - id: "{ACCOUNT}"
    name: 压测预付费客户
    secret: "{SECRET}"
    bound_ips: [127.0.0.0/8]
    billing: prepaid
    balance: {OPENING_BALANCE}
    price: {PRICE}
    # above the 8 connections: leases of connections a killed front-end held live on for
    # session_lease_seconds, and the soak must not wait for them to expire
    max_connections: 64
    access_code: "{SRC}"
    signatures: [{SIG}]
    msg_formats: [8]
    channels: [ch-cmcc, ch-cucc, ch-ctcc]
"""


def soak_rules(target: Path, sim_port: int) -> Path:
    shutil.copytree(SHIPPED_RULES, target, symlinks=True)
    channels = target / "channels.yaml"
    text = channels.read_text(encoding="utf-8")
    if "port: 7891" not in text:
        raise RuntimeError("the shipped channels.yaml changed shape; adapt tests/soak")
    channels.write_text(text.replace("port: 7891", f"port: {sim_port}"), encoding="utf-8")
    with open(target / "accounts.yaml", "a", encoding="utf-8") as f:
        f.write(SOAK_ACCOUNT)
    return target


# ------------------------------------------------------------------------------ the processes
class Chain:
    # A long SMS part sent again after a lost SUBMIT_RESP may reach a front-end restarted
    # since its message completed: to it the part starts a new message, which ends in MA:0026
    # after the reassembly timeout. 20 s instead of 180 keeps the soak's wait for it short.
    GATEWAY_ENV = {"SMSPOLICY_REPORT_RESEND": "2.0", "SMSPOLICY_POLICY_TIMEOUT": "3.0",
                   "SMSPOLICY_RESPONSE_TIMEOUT": "5.0", "SMSPOLICY_REASSEMBLY_TIMEOUT": "20"}

    def __init__(self, work: Path, report_delay: float = 0.1):
        self.work = work
        sim_port = free_port()
        self.rules = soak_rules(work / "rules", sim_port)
        self.sim = SimulatorProc(work / "sim", accounts="", port=sim_port,
                                 extra=["--rules", str(self.rules), "--report-delay",
                                        str(report_delay)])
        self.daemon = DaemonProc(work / "daemon", rules_dir=self.rules)
        self.data = work / "var"
        self.gateway_port = free_port()
        self.start_gateway()
        self.forwarder = ForwarderProc(work, self.rules, self.data,
                                       {"SMSPOLICY_UPSTREAM_SUBMIT_TIMEOUT": "2"})

    def start_gateway(self) -> None:
        self.gateway = Proc(["gateway", "--listen", f"127.0.0.1:{self.gateway_port}", "--policy",
                             self.daemon.target, "--data", str(self.data), "--gateway-id",
                             GATEWAY_ID, "--log-level", "WARNING"],
                            self.work / f"gateway-{time.time_ns()}.log", self.GATEWAY_ENV)
        deadline = time.time() + 30
        while "CMPP gateway listening" not in self.gateway.output():
            if not self.gateway.alive() or time.time() > deadline:
                raise RuntimeError(f"gateway did not start:\n{self.gateway.output()}")
            time.sleep(0.05)

    # -- faults (blocking; the harness runs them in a thread) ------------------------------
    def kill_gateway(self) -> None:
        self.gateway.kill()
        self.start_gateway()

    def kill_forwarder(self) -> None:
        self.forwarder.kill9()
        self.forwarder.start()

    def kill_daemon(self) -> None:
        self.daemon.proc.kill()
        self.daemon.channel.close()
        self.daemon.start()

    def drop_upstream(self) -> None:
        self.sim.control("drop")

    def late_upstream(self, rng: random.Random) -> None:
        # some under the forwarder's 2 s SUBMIT_RESP timeout, some over it (MO:0254 first,
        # then the late answer and its report: the customer must still get one report)
        self.sim.control(f"fault delay={rng.choice((0.5, 1.0, 3.0))} count={rng.randint(5, 30)}")

    def stop(self) -> None:
        for stop in (self.forwarder.stop, self.gateway.stop, self.daemon.stop, self.sim.stop):
            try:
                stop()
            except Exception as e:  # noqa: BLE001 - stop the others anyway
                print(f"soak: stopping: {e}", file=sys.stderr)


# ------------------------------------------------------------------------------ the traffic
@dataclasses.dataclass
class Job:
    """One customer message: one SUBMIT, or the parts of a long one."""
    kind: str              # single | group | long | refused
    dests: tuple[str, ...]
    bodies: list[bytes]    # Msg_Content per SUBMIT
    src_id: str = SRC
    segments: int = 1      # billed segments per recipient


@dataclasses.dataclass
class Answered:
    kind: str
    msg_id: int
    result: int
    dests: tuple[str, ...]
    segments: int          # billed per accepted recipient (long: per message, on the last part)
    part: int              # 0 for single SUBMITs, else Pk_number


class Numbers:
    def __init__(self, stream: int):
        self.stream, self.n = stream, 0

    def next(self) -> str:
        self.n += 1
        i = self.n * 8 + self.stream
        return f"{PREFIXES[i % 3]}{(i // 3) % 10000:04d}"


def make_jobs(rng: random.Random, conn: int, count: int) -> list[Job]:
    numbers = Numbers(conn)
    jobs = []
    for i in range(count):
        x = rng.random()
        tag = f"soak {conn}-{i} 码{rng.randrange(10**6):06d}"
        if x < 0.03:   # Src_Id outside the account's access code: Result 10, never a report
            jobs.append(Job("refused", (numbers.next(),), [(SIG + tag).encode("utf-16-be")],
                            src_id="1069999"))
        elif x < 0.18:
            n = rng.choice((1, 1, 2))
            text = SIG + tag + " 长" + "".join(chr(0x4E00 + rng.randrange(2000))
                                               for _ in range(rng.randrange(70, 190)))
            bodies = split_ucs2(text, ref=(conn * 37 + i) % 256)
            jobs.append(Job("long", tuple(numbers.next() for _ in range(n)), bodies,
                            segments=len(bodies)))
        elif x < 0.40:
            dests = [numbers.next() for _ in range(rng.randint(2, 5))]
            if rng.random() < 0.1:
                dests[rng.randrange(len(dests))] = BLACKLISTED
            jobs.append(Job("group", tuple(dests), [(SIG + tag + " 群发").encode("utf-16-be")]))
        else:
            jobs.append(Job("single", (numbers.next(),), [(SIG + tag).encode("utf-16-be")]))
    return jobs


class Customer:
    """One customer connection (re-opened whenever it dies) and what it learnt."""

    def __init__(self, index: int, port: int, jobs: list[Job], workers: int, progress):
        self.index, self.port, self.jobs, self.workers = index, port, jobs, workers
        self.progress = progress
        self.answered: list[Answered] = []
        self.unanswered = 0          # SUBMITs sent again because no SUBMIT_RESP came
        self.unanswered_dests = 0    # their recipients x parts: the bound on "maybe" reports
        self.flow_control = 0
        self.reconnects = 0
        self.delivers = []
        self.client: CmppClient | None = None
        self._lock = asyncio.Lock()
        self._next = 0

    async def connection(self) -> CmppClient:
        async with self._lock:
            while self.client is None or self.client._closed.done():
                if self.client is not None:
                    self.delivers += self.client.delivers
                    self.client.delivers = []
                    await self.client.close()
                    self.client = None
                    self.reconnects += 1
                try:
                    client = await asyncio.wait_for(CmppClient.open(self.port), 5)
                    resp = await client.login(ACCOUNT, SECRET)
                except (OSError, asyncio.TimeoutError, ServerClosed):
                    await asyncio.sleep(0.2)
                    continue
                if resp.status != 0:   # 100 while the daemon is down
                    await client.close()
                    await asyncio.sleep(0.2)
                    continue
                self.client = client
            return self.client

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.workers)))

    async def _worker(self) -> None:
        while self._next < len(self.jobs):
            job = self.jobs[self._next]
            self._next += 1
            for part, body in enumerate(job.bodies, 1):
                await self._submit(job, part, body)
            self.progress()

    async def _submit(self, job: Job, part: int, body: bytes) -> None:
        long = len(job.bodies) > 1
        while True:
            client = await self.connection()
            packet = Submit(client.next_seq(), pk_total=len(job.bodies), pk_number=part,
                            registered_delivery=1, tp_udhi=1 if long else 0, msg_fmt=8,
                            msg_src=ACCOUNT, src_id=job.src_id, dest_terminal_ids=job.dests,
                            msg_content=body)
            try:
                resp = await client.request(packet, timeout=15)
            except (ServerClosed, asyncio.TimeoutError, ConnectionError, OSError):
                # unknown to us: maybe stored, maybe not; a real SP sends it again
                self.unanswered += 1
                self.unanswered_dests += len(job.dests)
                if not client._closed.done():   # a timeout on a live link: start afresh
                    client.writer.transport.abort()
                continue
            last = part == len(job.bodies)
            self.answered.append(Answered(job.kind, resp.msg_id, resp.result, job.dests,
                                          job.segments if last else 0, part if long else 0))
            if resp.result == 8:   # flow control (daemon down or slow): try again shortly
                self.flow_control += 1
                await asyncio.sleep(0.2)
                continue
            return

    async def close(self) -> None:
        if self.client is not None:
            self.delivers += self.client.delivers
            self.client.delivers = []
            await self.client.close()
            self.client = None

    def all_delivers(self) -> list:
        return self.delivers + (self.client.delivers if self.client else [])


# ------------------------------------------------------------------------------ the run
@dataclasses.dataclass
class Plan:
    messages: int = 5000
    connections: int = 8
    workers: int = 4            # SUBMITs in flight per connection
    kills: int = 3              # kill -9 of front-end, forwarder, daemon, in turn
    drops: int = 2              # upstream connections dropped
    lates: int = 2              # bursts of late upstream answers
    seed: int = 1
    settle: float = 120.0       # seconds to wait for the last reports after the last submit


def fault_plan(plan: Plan) -> list[tuple[float, str]]:
    """(fraction of messages sent, action), sorted: reproducible from the seed. Kills get a
    slot each between 5 % and 90 % of the run, so that two never fall together and each
    lands in traffic; drops and late answers fall anywhere in that span."""
    rng = random.Random(plan.seed)
    kinds = ["gateway", "forwarder", "daemon"]
    rng.shuffle(kinds)
    slot = 0.85 / max(plan.kills, 1)
    actions = [(0.05 + slot * (i + rng.uniform(0.2, 0.8)), kinds[i % 3])
               for i in range(plan.kills)]
    actions += [(rng.uniform(0.05, 0.9), a) for a in ["drop"] * plan.drops + ["late"] * plan.lates]
    return sorted(actions)


async def _drive(chain: Chain, plan: Plan, log) -> dict:
    rng = random.Random(plan.seed)
    per = [plan.messages // plan.connections + (1 if i < plan.messages % plan.connections else 0)
           for i in range(plan.connections)]
    sent = [0]
    progress_event = asyncio.Event()

    def progress():
        sent[0] += 1
        progress_event.set()

    customers = [Customer(i, chain.gateway_port, make_jobs(random.Random(plan.seed * 100 + i),
                                                           i, n), plan.workers, progress)
                 for i, n in enumerate(per)]
    faults = fault_plan(plan)
    done_faults: list[dict] = []
    loop = asyncio.get_running_loop()

    async def fault_task():
        for fraction, action in faults:
            while sent[0] < fraction * plan.messages:
                progress_event.clear()
                await progress_event.wait()
            t0 = time.monotonic()
            fn = {"gateway": chain.kill_gateway, "forwarder": chain.kill_forwarder,
                  "daemon": chain.kill_daemon, "drop": chain.drop_upstream,
                  "late": lambda: chain.late_upstream(rng)}[action]
            await loop.run_in_executor(None, fn)
            done_faults.append({"at": sent[0], "action": action,
                                "seconds": round(time.monotonic() - t0, 2)})
            log(f"fault {action} at {sent[0]} messages ({time.monotonic() - t0:.1f} s)")

    start = time.monotonic()
    faults_task = loop.create_task(fault_task())
    await asyncio.gather(*(c.run() for c in customers))
    send_seconds = time.monotonic() - start
    await faults_task
    log(f"all {plan.messages} messages answered in {send_seconds:.1f} s; waiting for reports")
    expected = _expected(customers)
    deadline = time.monotonic() + plan.settle
    while time.monotonic() < deadline:
        got = _identities(customers)
        missing = expected.keys() - got
        if not missing:
            break
        for c in customers:   # a connection that died idle is re-opened so reports can come
            if c.client is None or c.client._closed.done():
                await c.connection()
        await asyncio.sleep(0.5)
    await asyncio.sleep(3.0)   # duplicates and late reports would arrive now
    await asyncio.gather(*(c.close() for c in customers))
    return {"customers": customers, "faults": done_faults, "send_seconds": send_seconds,
            "total_seconds": time.monotonic() - start}


def _expected(customers) -> dict[tuple[int, str], Answered]:
    """(Msg_Id, recipient) -> its SUBMIT, for every SUBMIT answered with Result 0."""
    out = {}
    for c in customers:
        for a in c.answered:
            if a.result == 0:
                for i, dest in enumerate(a.dests):
                    out[(a.msg_id + i, dest)] = a
    return out


def _identities(customers) -> set[tuple[int, str]]:
    got = set()
    for c in customers:
        for d in c.all_delivers():
            if d.registered_delivery == 1:
                r = parse_report(d, V21)
                got.add((r.msg_id, r.dest_terminal_id))
    return got


def check(chain: Chain, outcome: dict) -> dict:
    """Every check of the module docstring; returns the figures and the list of failures."""
    customers = outcome["customers"]
    expected = _expected(customers)
    refused_ids = {a.msg_id + i: a for c in customers for a in c.answered if a.result != 0
                   for i in range(len(a.dests))}
    reports: dict[tuple[int, str], set[tuple[int, str]]] = {}
    redelivered = 0
    seen_delivers = set()
    for c in customers:
        for d in c.all_delivers():
            if d.registered_delivery != 1:
                continue
            r = parse_report(d, V21)
            key = (r.msg_id, r.dest_terminal_id)
            if (key, d.msg_id) in seen_delivers:
                redelivered += 1
            seen_delivers.add((key, d.msg_id))
            reports.setdefault(key, set()).add((d.msg_id, r.stat))
    failures = []
    lost = [k for k in expected if k not in reports]
    duplicated = {k: v for k, v in reports.items() if len(v) > 1}
    on_refused = [k for k in reports if k[0] in refused_ids]
    maybe = [k for k in reports if k not in expected and k[0] not in refused_ids]
    wrong_stat = []
    stats: dict[str, int] = {}
    for k, v in reports.items():
        for _, stat in v:
            stats[stat] = stats.get(stat, 0) + 1
        if k in expected and expected[k].kind in ("single", "group"):
            want_ma1 = k[1] == BLACKLISTED
            if any((stat == "MA:0001") != want_ma1 for _, stat in v):
                wrong_stat.append((k, sorted(v)))
    if lost:
        failures.append(f"{len(lost)} Result-0 recipients without a report, e.g. {lost[:5]}")
    if duplicated:
        failures.append(f"{len(duplicated)} recipients with two different reports, e.g. "
                        f"{list(duplicated.items())[:5]}")
    if on_refused:
        failures.append(f"{len(on_refused)} reports for refused SUBMITs, e.g. {on_refused[:5]}")
    unanswered_dests = sum(c.unanswered_dests for c in customers)
    if len(maybe) > unanswered_dests:
        failures.append(f"{len(maybe)} reports for Msg_Ids never answered, more than the "
                        f"{unanswered_dests} recipients of unanswered SUBMITs")
    # A single or group message's report is the upstream's Stat or an MO code of the
    # forwarder, MA:0001 for the blacklisted number; another MA code would be the policy
    # refusing soak traffic. (Long parts may rightly get MA codes: a part sent again after a
    # lost SUBMIT_RESP is a duplicate part.)
    if wrong_stat:
        failures.append(f"{len(wrong_stat)} reports with an unexpected Stat, e.g. {wrong_stat[:5]}")

    # -- balances and counters -----------------------------------------------------------
    accepted_segments = sum(a.segments for c in customers for a in c.answered if a.result == 0
                            for d in a.dests if d != BLACKLISTED)
    # (a long message is charged once, counted at its last part's Result 0)
    balance = _balance(chain)
    consumed = OPENING_BALANCE - balance
    counters = sqlite3.connect(chain.daemon.data_dir / "counters.db")
    try:
        volume = counters.execute(
            "SELECT coalesce(sum(value), 0) FROM counters WHERE base LIKE ?",
            (f"a:account-daily-volume:{ACCOUNT}:%",)).fetchone()[0]
        # only the soak account sends, to numbers of its own: the per channel and number
        # counters (daily, one per recipient) add up to the recipients charged. (The per-minute
        # channel volume cannot be summed: its buckets expire and are swept during the run.)
        channel_numbers = counters.execute(
            "SELECT coalesce(sum(value), 0) FROM counters WHERE base LIKE 'cn:channel-number-daily:%'"
        ).fetchone()[0]
        charged = {row[0]: json.loads(row[1]) if row[1] else {} for row in counters.execute(
            "SELECT id, record FROM requests WHERE id LIKE ?", (f"{GATEWAY_ID}:%",))}
        # what each charge debited: its accepted recipients' segments, from the answer the
        # store keeps with the charge (the same commit), whether or not anyone got that answer
        charge_debit = {rid: _debit(rec, resp) for rid, rec, resp in counters.execute(
            "SELECT id, record, response FROM requests WHERE id LIKE ?", (f"{GATEWAY_ID}:%",))}
    finally:
        counters.close()
    unexplained = [rid for rid, d in charge_debit.items() if d is None]
    if unexplained:
        failures.append(f"{len(unexplained)} charges without a stored answer, e.g. {unexplained[:5]}")
    stored_debit = sum(d or 0 for d in charge_debit.values())
    if consumed != stored_debit:
        failures.append(f"balance debited {consumed} fen, the charges stored with their request "
                        f"ids add up to {stored_debit}")
    if consumed != volume * PRICE:
        failures.append(f"balance debited {consumed} fen, but the account's segment counter says "
                        f"{volume} segments x {PRICE} fen = {volume * PRICE}")
    charged_recipients = sum(len(rec.get("ok") or []) for rec in charged.values())
    if channel_numbers != charged_recipients:
        failures.append(f"the channel-number counters hold {channel_numbers}, the charges "
                        f"accepted {charged_recipients} recipients")
    not_charged = []
    told = set()
    for c in customers:
        for a in c.answered:
            if a.result == 0 and a.part == 0:
                rid = f"{GATEWAY_ID}:{a.msg_id}"
                told.add(rid)
                rec = charged.get(rid)
                want = [i for i, d in enumerate(a.dests) if d != BLACKLISTED]
                if rec is None or sorted(rec.get("ok") or []) != want:
                    not_charged.append((rid, rec))
            elif a.result == 0:
                told.add(f"{GATEWAY_ID}:{a.msg_id}")
    if not_charged:
        failures.append(f"{len(not_charged)} Result-0 submits not charged as accepted under "
                        f"their request id, e.g. {not_charged[:5]}")
    orphans = [rid for rid, rec in charged.items() if rid not in told and rec.get("ok")]
    orphan_debit = sum(charge_debit[rid] or 0 for rid in orphans)
    if not accepted_segments * PRICE <= consumed <= accepted_segments * PRICE + orphan_debit:
        failures.append(f"balance debited {consumed} fen; the Result-0 recipients imply "
                        f"{accepted_segments * PRICE}, plus at most {orphan_debit} for decisions "
                        f"charged that the customer was never told about")

    # -- the decision logs ---------------------------------------------------------------
    logs = sorted(str(p) for p in chain.daemon.data_dir.glob("decisions*.db"))
    verify = subprocess.run([sys.executable, "-m", "policy", "audit", "verify", *logs], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    if verify.returncode != 0:
        failures.append(f"audit verify failed ({verify.returncode}): "
                        f"{(verify.stdout + verify.stderr)[-2000:]}")
    debits: dict[str, int] = {}   # request id -> fen debited, as the log recorded it
    for path in logs:
        db = sqlite3.connect(path)
        try:
            for rid, results in db.execute("SELECT request_id, results FROM decisions"
                                           " WHERE request_id LIKE ?", (f"{GATEWAY_ID}:%",)):
                debits[rid] = (json.loads(results).get("balance") or {}).get("debit", 0)
        finally:
            db.close()
    # a charge whose daemon died before the log commit was never answered either (answers wait
    # for the commit): an orphan like the others, but one the log cannot explain
    unlogged = sorted(set(charged) - debits.keys())
    # (a long message's request id is its first part's, which may be a copy the customer was
    # never told about: only single and group SUBMITs are looked up)
    unlogged_told = sorted({f"{GATEWAY_ID}:{a.msg_id}" for c in customers for a in c.answered
                            if a.result == 0 and a.part == 0} - debits.keys())
    if unlogged_told:
        failures.append(f"{len(unlogged_told)} Result-0 submits missing from the decision log, "
                        f"e.g. {unlogged_told[:5]}")
    mismatched = [rid for rid, d in debits.items() if rid in charge_debit
                  and (d or 0) != (charge_debit[rid] or 0)]
    if mismatched:
        failures.append(f"{len(mismatched)} decisions whose logged debit differs from the "
                        f"charge, e.g. {mismatched[:5]}")

    answered = [a for c in customers for a in c.answered]
    return {
        "failures": failures,
        "submits_answered": len(answered),
        "result_0": sum(a.result == 0 for a in answered),
        "result_8": sum(a.result == 8 for a in answered),
        "other_results": sorted({a.result for a in answered} - {0, 8}),
        "unanswered_resent": sum(c.unanswered for c in customers),
        "reconnects": sum(c.reconnects for c in customers),
        "reports_expected": len(expected),
        "reports_received": len(reports),
        "maybe_reports": len(maybe),
        "redelivered_same_deliver": redelivered,
        "stats": stats,
        "accepted_segments": accepted_segments,
        "debited_fen": consumed,
        "orphan_charges": len(orphans),
        "orphan_debit_fen": orphan_debit,
        "charged_not_logged": len(unlogged),
        "decision_log_files": len(logs),
        "decisions_logged": len(debits),
        "requests_charged": len(charged),
    }


def _debit(record: str | None, response: bytes | None) -> int | None:
    from policy.api.v1 import policy_pb2 as pb
    if response is None:
        return None
    doc = json.loads(record) if record else {}
    answer = pb.EvaluateResponse.FromString(response)
    if doc.get("insuff") or answer.submit_result:
        return 0
    return PRICE * sum(answer.recipients[i].segments or 1 for i in doc.get("ok") or [])


def _balance(chain: Chain) -> int:
    from policy.api.v1 import policy_pb2 as pb
    return chain.daemon.admin.GetBalance(pb.BalanceRequest(account_id=ACCOUNT), timeout=10).balance


def run_soak(work: Path, plan: Plan, log=print) -> dict:
    """Start the chain in `work`, run `plan`, check; the figures (failures under 'failures')."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    chain = Chain(work)
    try:
        log(f"chain up in {time.monotonic() - started:.1f} s: front-end 127.0.0.1:"
            f"{chain.gateway_port}, daemon {chain.daemon.target}; plan {fault_plan(plan)}")
        outcome = asyncio.run(_drive(chain, plan, log))
        figures = check(chain, outcome)
        figures.update(faults=outcome["faults"], send_seconds=round(outcome["send_seconds"], 1),
                       total_seconds=round(outcome["total_seconds"], 1), messages=plan.messages,
                       seed=plan.seed, work=str(work))
        _check_alive(chain, figures)
        return figures
    finally:
        chain.stop()


def _check_alive(chain: Chain, figures: dict) -> None:
    """A process that died by itself (not by the fault task) is a crash."""
    for name, proc in (("daemon", chain.daemon.proc), ("front-end", chain.gateway),
                       ("forwarder", chain.forwarder.proc), ("simulator", chain.sim.proc)):
        if not proc.alive():
            figures["failures"].append(f"the {name} exited by itself:\n{proc.output()[-2000:]}")
    for path in chain.work.rglob("*.log"):
        text = path.read_text(errors="replace")
        if "Traceback" in text:
            figures.setdefault("tracebacks", []).append(
                f"{path.name}: {text[text.index('Traceback'):][:1500]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--workers", type=int, default=4, help="SUBMITs in flight per connection")
    p.add_argument("--kills", type=int, help="kill -9 count (default: one per 10,000 messages, "
                                             "at least 3: front-end, forwarder, daemon in turn)")
    p.add_argument("--drops", type=int, help="upstream drops (default: like --kills)")
    p.add_argument("--lates", type=int, help="bursts of late upstream answers (default: like --kills)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--settle", type=float, default=300.0)
    p.add_argument("--work", type=Path, help="folder for the processes' data and logs "
                                             "(default: a new one under /tmp)")
    args = p.parse_args(argv)
    kills = args.kills if args.kills is not None else max(3, args.messages // 10_000)
    plan = Plan(args.messages, args.connections, args.workers, kills,
                args.drops if args.drops is not None else kills,
                args.lates if args.lates is not None else kills, args.seed, args.settle)
    work = args.work or Path(f"/tmp/smspolicy-soak-{time.strftime('%Y%m%d-%H%M%S')}")

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    figures = run_soak(work, plan, log)
    failures = figures.pop("failures")
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    for f in failures:
        print(f"FAIL: {f}")
    print("soak: OK" if not failures else f"soak: {len(failures)} failures")
    return 1 if failures else 0
