"""Which fault the simulator injects into a SUBMIT, and how the final state of a report is chosen.

Three deterministic triggers, checked in this order for every SUBMIT (or part of a long one):

1. a marker in the message text (only the part that carries it):
   ``#fault:result=13`` answer SUBMIT_RESP with Result 13 (any 0..255; no report follows),
   ``#fault:noresp``    never answer,
   ``#fault:drop``      close the connection without answering,
   ``#fault:delay=1.5`` answer after 1.5 seconds (a slow SMSC, for window tests),
   ``#fault:stat=EXPIRED`` answer normally, and make the report's Stat EXPIRED;
2. faults queued on the control port (``fault noresp count=3``), one per SUBMIT;
3. random faults at configured rates (``--drop-rate`` ...), drawn from a seeded generator.

A ``stat=`` marker only chooses the report's Stat; it combines with the other kinds.
"""
from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass

KINDS = ("result", "noresp", "drop", "delay", "stat")
_MARKER = re.compile(r"#fault:(result=\d{1,3}|noresp|drop|delay=\d+(?:\.\d+)?|stat=[A-Z0-9:]{7})")


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: str  # one of KINDS
    value: int | float | str | None = None

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}={self.value}"


def parse_fault(spec: str) -> Fault:
    """``result=13``, ``noresp``, ``drop``, ``delay=0.5`` or ``stat=UNDELIV``."""
    kind, _, value = spec.partition("=")
    if kind in ("noresp", "drop") and not value:
        return Fault(kind)
    try:
        if kind == "result":
            code = int(value)
            if not 0 < code <= 255:
                raise ValueError
            return Fault(kind, code)
        if kind == "delay":
            seconds = float(value)
            if not 0 <= seconds <= 3600:
                raise ValueError
            return Fault(kind, seconds)
        if kind == "stat":
            if not (len(value) == 7 and value.isascii() and value.isprintable()):
                raise ValueError
            return Fault(kind, value)
    except ValueError:
        pass
    raise FaultSpecError(f"bad fault {spec!r}: expected result=1..255, noresp, drop, "
                         f"delay=SECONDS or stat=<7 characters>")


def markers(text: str) -> list[Fault]:
    return [parse_fault(m) for m in _MARKER.findall(text)]


@dataclass(frozen=True)
class FaultRates:
    """Probability per SUBMIT of each random fault (they exclude each other)."""
    drop: float = 0.0
    noresp: float = 0.0
    result: float = 0.0
    result_code: int = 8  # the Result a random result fault answers (8 = flow control)

    def __post_init__(self):
        total = self.drop + self.noresp + self.result
        if min(self.drop, self.noresp, self.result) < 0 or total > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1, got {total}")
        if not 0 < self.result_code <= 255:
            raise ValueError(f"result code {self.result_code} is not 1..255")


@dataclass(frozen=True)
class Outcome:
    fault: Fault | None  # result/noresp/drop/delay, or None for a normal answer
    stat: str | None  # the report's Stat when a marker or queued fault forces it


class FaultPlan:
    """Decides each SUBMIT's outcome. Separate seeded generators for faults and for report
    states, so turning fault rates on does not change which messages are DELIVRD."""

    def __init__(self, rates: FaultRates, delivrd_ratio: float, seed: int | None):
        if not 0 <= delivrd_ratio <= 1:
            raise ValueError(f"DELIVRD ratio {delivrd_ratio} is not within 0..1")
        self.rates = rates
        self.delivrd_ratio = delivrd_ratio
        self._fault_rng = random.Random(seed)
        self._stat_rng = random.Random(None if seed is None else seed + 1)
        self.queued: deque[Fault] = deque()

    def queue(self, fault: Fault, count: int = 1) -> None:
        self.queued.extend([fault] * count)

    def outcome(self, text: str) -> Outcome:
        found = markers(text)
        stat = next((f.value for f in found if f.kind == "stat"), None)
        fault = next((f for f in found if f.kind != "stat"), None)
        if fault is None and self.queued:
            queued = self.queued.popleft()
            if queued.kind == "stat":
                stat = stat or queued.value
            else:
                fault = queued
        if fault is None:
            fault = self._random_fault()
        return Outcome(fault, stat)

    def _random_fault(self) -> Fault | None:
        r = self.rates
        if not (r.drop or r.noresp or r.result):
            return None
        x = self._fault_rng.random()
        if x < r.drop:
            return Fault("drop")
        if x < r.drop + r.noresp:
            return Fault("noresp")
        if x < r.drop + r.noresp + r.result:
            return Fault("result", r.result_code)
        return None

    def report_stat(self) -> str:
        return "DELIVRD" if self._stat_rng.random() < self.delivrd_ratio else "UNDELIV"
