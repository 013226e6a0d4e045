"""The simulator's control port: one command per line, one JSON object per answer line.

    stats                               counters, connections and queued DELIVERs per account
    submits [FROM]                      every SUBMIT received (index >= FROM), oldest first
    fault SPEC [count=N]                inject SPEC into the next N SUBMITs (see faults.py)
    fault clear                         forget queued faults
    mo ACCOUNT SRC DEST_ID TEXT...      send an MO message from SRC to DEST_ID over ACCOUNT's link
    drop [ACCOUNT]                      close the connections (of ACCOUNT) now

Answers are {"ok": true, ...} or {"ok": false, "error": "..."}. `request()` is the client.
"""
from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import asdict

from .faults import FaultSpecError, parse_fault
from .smsc import Simulator


class ControlError(RuntimeError):
    pass


def execute(sim: Simulator, line: str) -> dict:
    words = line.split()
    if not words:
        raise ControlError("empty command")
    command, args = words[0].lower(), words[1:]
    if command == "stats":
        return {**asdict(sim.stats), "connections": sim.connections(), "pending": sim.pending(),
                "queued_faults": [str(f) for f in sim.plan.queued]}
    if command == "submits":
        start = int(args[0]) if args else 0
        return {"submits": [r.as_dict() for r in sim.submits if r.index >= start]}
    if command == "fault":
        if args == ["clear"]:
            sim.plan.queued.clear()
            return {}
        if not args or len(args) > 2:
            raise ControlError("usage: fault SPEC [count=N] | fault clear")
        count = 1
        if len(args) == 2:
            key, _, value = args[1].partition("=")
            if key != "count" or not value.isdigit() or int(value) < 1:
                raise ControlError(f"expected count=N (N >= 1), got {args[1]!r}")
            count = int(value)
        sim.plan.queue(parse_fault(args[0]), count)
        return {"queued": len(sim.plan.queued)}
    if command == "mo":
        parts = line.split(None, 4)
        if len(parts) < 5:
            raise ControlError("usage: mo ACCOUNT SRC DEST_ID TEXT")
        _, account, src, dest_id, text = parts
        sim.send_mo(account, src, dest_id, text)
        return {}
    if command == "drop":
        if len(args) > 1:
            raise ControlError("usage: drop [ACCOUNT]")
        return {"dropped": sim.drop(args[0] if args else None)}
    raise ControlError(f"unknown command {command!r}; try stats, submits, fault, mo, drop")


async def serve_control(sim: Simulator, host: str, port: int) -> asyncio.base_events.Server:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = {"ok": True, **execute(sim, line.decode("utf-8").strip())}
                except (ControlError, FaultSpecError, ValueError, UnicodeDecodeError) as e:
                    answer = {"ok": False, "error": str(e)}
                writer.write(json.dumps(answer, ensure_ascii=False).encode("utf-8") + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(session, host, port)


def request(address: tuple[str, int], line: str, timeout: float = 5.0) -> dict:
    """Send one command to a running simulator's control port; ControlError if it refused."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(line.encode("utf-8") + b"\n")
        with sock.makefile("rb") as reply:
            answer = json.loads(reply.readline())
    if not answer.pop("ok"):
        raise ControlError(answer["error"])
    return answer
