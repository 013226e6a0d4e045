"""Pickled frames over a pipe, <u32 length><pickle>: how the daemon talks to its helper
processes (policy.audit.log_process, policy.counters.fold_process). Both ends are this program,
started by it; the pipes are private to the pair."""
from __future__ import annotations

import os
import pickle
import struct

_LEN = struct.Struct("<I")


def write_frame(fd: int, obj=None, payload: bytes | None = None) -> None:
    """Write `obj` pickled (or `payload`, already pickled) as one frame."""
    if payload is None:
        payload = pickle.dumps(obj, 5)
    data = memoryview(_LEN.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, raw: bool = False):
    """The next frame's object (its bytes with raw); None at end of file (the other end
    closed or died)."""
    head = _read_exact(fd, _LEN.size)
    if head is None:
        return None
    body = _read_exact(fd, _LEN.unpack(head)[0])
    return body if body is None or raw else pickle.loads(body)


def helper_env() -> dict:
    """The environment of a helper: this checkout's `policy` first on its path, so that the
    helper runs the daemon's own code however the daemon was started."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
