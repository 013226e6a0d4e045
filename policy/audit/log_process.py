"""The decision log written by a child process, so that the daemon's core is not spent on it.

The daemon is one Python process whose work holds the GIL. DecisionLog's writer thread (row
encoding, hash chaining, SQLite) took about a fifth of it (py-spy, EvaluateBatch as shipped)
while the machine's other core sat idle. DecisionLogProcess has the interface the pipeline and
the service use (append, reserve, release, mark, wait_durable, has_room, healthy, flush, close); the same
DecisionLog runs in `python -m policy.audit.log_process`, and the daemon only serializes each
batch of records into a pipe.

Frames are <u32 length><payload> (policy.frames):
  daemon -> writer   b"J" + orjson of [record, ...]: records of plain JSON types (the daemon's),
                     whose round trip is exact (a tuple comes back a list, stored alike); about
                     half the cost of pickle on both sides (bench/log_frames_micro.py;
                     BENCHMARKS.md, "Helper processes")
                     b"P" + pickle of [record, ...]: the rest (bytes, a lone surrogate, a key
                     that is not a string, an int past 64 bits, an infinite ts), exact
                     b"C" + pickle of the close timeout
  writer -> daemon   pickles:
                     {"committed": n, "healthy", "last_error", "write_failures", "last_seq",
                      "last_hash"}   every change of the writer's state (the first one is the
                     hello), or {"error": (type name, message)} when the log cannot be opened

Nothing answered is lost. The daemon answers a decision once the writer reports its record
committed (wait_durable, as with the thread). Until then the daemon keeps the frame. If
the writer dies, another one is started and the frames still unconfirmed are sent again. The new
writer skips the leading records whose decision ids its predecessor had already committed.
Without the daemon (a kill -9: its end of the pipe closes), the writer commits what it received
and exits. SIGINT and SIGTERM are the daemon's to handle: the writer ignores them and stops when
the daemon closes it.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import deque

import orjson

from ..frames import helper_env, read_frame, write_frame
from .decision_log import (FORMAT, DecisionLog, LogLockedError, SlotReservations, _jsonable,
                           check_options, wait_until)

log = logging.getLogger("policy.audit")

SEND_BATCH = 256          # records buffered before append() sends them without a mark
LOCK_WAIT = 10.0          # seconds a new writer waits for the log lock its predecessor still holds
_RESPAWN_MIN, _RESPAWN_MAX = 0.2, 5.0
_F_SETPIPE_SZ = 1031      # fcntl: a larger pipe holds a burst of batches without blocking the sender
_PIPE_BYTES = 1 << 20
_ERRORS = {"LogLockedError": LogLockedError, "ValueError": ValueError,
           "FileNotFoundError": FileNotFoundError}


_PLAIN = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
_INF = (float("inf"), float("-inf"))


def _encode(batch: list[dict]) -> bytes:
    """A records frame: JSON when every value is a plain JSON type, else a pickle (exact)."""
    if not any(r.get("ts") in _INF for r in batch):   # JSON has no infinity
        try:
            return b"J" + orjson.dumps(batch, option=_PLAIN)   # anything else raises
        except TypeError:
            pass
    try:
        return b"P" + pickle.dumps(batch, 5)
    except Exception:  # noqa: BLE001 - one odd value must not lose the batch
        return b"P" + pickle.dumps([_picklable(r) for r in batch], 5)


def _decode(payload: bytes) -> list[dict]:
    return orjson.loads(payload[1:]) if payload[:1] == b"J" else pickle.loads(payload[1:])


def _picklable(record: dict) -> dict:
    """A record pickle refuses, as the JSON the writer would have stored anyway."""
    try:
        pickle.dumps(record, 5)
        return record
    except Exception:  # noqa: BLE001 - whatever it holds, the decision is still logged
        return orjson.loads(orjson.dumps(record, default=_jsonable, option=orjson.OPT_NON_STR_KEYS))


class DecisionLogProcess(SlotReservations):
    """DecisionLog's caller side, its writer in a child process (see the module docstring)."""

    def __init__(self, path: str, content_mode: str = "full", rotate_bytes: int | None = None,
                 rotate_seconds: int | None = None, queue_max: int = 10000,
                 on_overflow: str = "block", flush_interval: float = 0.05,
                 keep_rotated: int | None = None, sync: str = "full", log_format: str = FORMAT,
                 lock_wait: float = LOCK_WAIT):
        self.path = check_options(path, content_mode, queue_max, on_overflow, sync, log_format)
        self.content_mode = content_mode
        self.queue_max = queue_max
        self.on_overflow = on_overflow
        self.flush_interval = flush_interval
        # the writer's own queue never refuses: this side bounds what is outstanding
        self._options = {"path": self.path, "content_mode": content_mode, "rotate_bytes": rotate_bytes,
                         "rotate_seconds": rotate_seconds, "queue_max": queue_max + 1,
                         "on_overflow": "block", "flush_interval": flush_interval,
                         "keep_rotated": keep_rotated, "sync": sync, "log_format": log_format}
        self.lock_wait = lock_wait
        self.write_failures = 0
        self.overflows = 0
        self.healthy = True
        self.last_error: str | None = None
        self.restarts = 0                  # writers started again after one died
        self._failures_before = 0          # write failures counted by writers that have exited
        self._last_seq, self._last_hash = 0, ""
        self._appended = 0                 # records accepted by append(), numbered from 1
        self._sent = 0                     # of them, handed to a writer
        self._acked = 0                    # of them, committed (the writer said so)
        self._buffer: list[dict] = []      # appended, not sent yet
        self._reserved = 0                 # slots reserve()d for decisions being made (fail_closed)
        self._unacked: deque[tuple[int, int, bytes]] = deque()   # (first, last record, frame) sent, not committed
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()  # frames go out whole and in order
        self._closing = False
        self._close_timeout = 30.0
        self._proc = self._spawn(resend=False)
        self._reader = threading.Thread(target=self._read_loop, name="decision-log-reader", daemon=True)
        self._reader.start()
        self._flusher = threading.Thread(target=self._flush_loop, name="decision-log-flusher", daemon=True)
        self._flusher.start()

    # ---- the caller's side, as DecisionLog's --------------------------------------------

    def append(self, record: dict, reserved: bool = False) -> bool:
        self._check(record, reserved)
        if not record.get("decision_id"):
            record["decision_id"] = uuid.uuid4().hex   # what a resend recognises it by
        counted = False
        if reserved and self.on_overflow == "fail_closed":
            with self._cond:
                self._reserved -= 1
                if self._closing:
                    raise RuntimeError("decision log is closed")
                self._appended += 1   # the reservation held its room
                self._buffer.append(record)
                full = len(self._buffer) >= SEND_BATCH
            if full:
                self._send()
            return True
        while True:
            with self._cond:
                if self._closing:
                    raise RuntimeError("decision log is closed")
                if self._appended + self._reserved - self._acked < self.queue_max:
                    self._appended += 1
                    self._buffer.append(record)
                    full = len(self._buffer) >= SEND_BATCH
                    break
                if not counted:
                    self.overflows += 1
                    counted = True
                if self.on_overflow == "fail_closed":
                    return False
            self._send()   # what is buffered must reach the writer for room to come back
            with self._cond:
                while self._appended - self._acked >= self.queue_max and not self._closing:
                    self._cond.wait(1.0)
        if full:
            self._send()
        return True

    def mark(self) -> int:
        return self._appended

    def wait_durable(self, mark: int, timeout: float) -> bool:
        if self._acked >= mark:
            return True
        self._send()
        deadline = time.monotonic() + timeout
        with self._cond:
            return wait_until(self, lambda: self._acked >= mark, deadline, healthy_only=True)

    @property
    def pending(self) -> int:
        return self._appended - self._acked

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def last_hash(self) -> str:
        return self._last_hash

    def flush(self, timeout: float | None = None) -> bool:
        self._send()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            return wait_until(self, lambda: self._acked >= self._appended, deadline)

    def close(self, timeout: float = 30.0) -> bool:
        with self._cond:
            already = self._closing
            self._closing, self._close_timeout = True, timeout
            self._cond.notify_all()
        if not already:
            self._send(force=True)
            self._send_close()
        self._reader.join(timeout + self.lock_wait + 5)
        if self.pending:
            log.error("decision log %s closed with %d decisions not written: %s",
                      self.path, self.pending, self.last_error)
        return not self.pending

    def __enter__(self) -> DecisionLogProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- sending -------------------------------------------------------------------------

    def _send(self, force: bool = False) -> None:
        with self._send_lock:
            with self._cond:
                if not self._buffer or (self._closing and not force):
                    return
                batch, self._buffer = self._buffer, []
                first = self._sent + 1
                self._sent += len(batch)
            payload = _encode(batch)
            frame = (first, first + len(batch) - 1, payload)
            with self._cond:
                self._unacked.append(frame)
            self._write(payload)

    def _send_close(self) -> None:
        with self._send_lock:
            self._write(b"C" + pickle.dumps(self._close_timeout))
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def _write(self, payload: bytes) -> None:
        try:
            write_frame(self._proc.stdin.fileno(), payload=payload)
        except (OSError, ValueError):
            pass   # the writer is gone: the reader starts another, which gets this frame again

    # ---- the writer process --------------------------------------------------------------

    def _spawn(self, resend: bool, base: int = 0) -> subprocess.Popen:
        """A writer whose first record will be number base + 1 (called with _send_lock held, or
        before anything is sent)."""
        argv = [sys.executable, "-m", "policy.audit.log_process", json.dumps(self._options),
                str(base), "resend" if resend else "new", str(self.lock_wait)]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=helper_env())
        try:
            import fcntl
            fcntl.fcntl(proc.stdin.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:
            pass   # a smaller pipe only makes the sender wait more often
        hello = read_frame(proc.stdout.fileno())
        if hello is None or "error" in hello:
            proc.stdin.close()
            proc.wait()
            if hello is None:
                raise RuntimeError(f"the decision log writer for {self.path} exited at start "
                                   f"(status {proc.returncode})")
            kind, message = hello["error"]
            raise _ERRORS.get(kind, RuntimeError)(message)
        self._status(hello)
        return proc

    def _status(self, st: dict) -> None:
        with self._cond:
            self._acked = max(self._acked, st["committed"])
            while self._unacked and self._unacked[0][1] <= self._acked:
                self._unacked.popleft()
            if st["healthy"] and not self.healthy:
                log.warning("decision log %s is writable again", self.path)
            self.healthy = st["healthy"]
            self.last_error = st["last_error"] or self.last_error
            self.write_failures = self._failures_before + st["write_failures"]
            self._last_seq, self._last_hash = st["last_seq"], st["last_hash"]
            self._cond.notify_all()

    def _read_loop(self) -> None:
        backoff = _RESPAWN_MIN
        while True:
            proc = self._proc
            try:
                st = read_frame(proc.stdout.fileno())
            except Exception:  # noqa: BLE001 - a torn frame: the writer died mid-write
                st = None
            if st is not None:
                self._status(st)
                backoff = _RESPAWN_MIN
                continue
            code = proc.wait()
            with self._cond:
                # closed as asked (records it could not write are reported by close()), or
                # nothing left to write: no new writer
                if self._closing and (code >= 0 or not (self._unacked or self._buffer)):
                    return
                self.healthy = False
                self.last_error = f"the decision log writer process exited (status {code})"
                self._failures_before = self.write_failures + 1
                self.write_failures = self._failures_before
                self._cond.notify_all()
            log.error("decision log %s: %s; %d decisions not confirmed, starting another writer",
                      self.path, self.last_error, self.pending)
            while True:
                time.sleep(backoff)
                backoff = min(backoff * 2, _RESPAWN_MAX)
                try:
                    with self._send_lock:
                        with self._cond:
                            frames = list(self._unacked)
                        # the new writer starts at the first record not known to be committed
                        base = frames[0][0] - 1 if frames else self._sent
                        self._proc = self._spawn(resend=True, base=base)
                        # sent by another thread: this one must go on reading the writer's status
                        threading.Thread(target=self._resend, args=(frames,), daemon=True).start()
                    self.restarts += 1
                    break
                except Exception as exc:  # noqa: BLE001 - keep trying; appends wait or fail closed
                    log.error("decision log %s: starting a writer failed: %s", self.path, exc)

    def _resend(self, frames: list) -> None:
        with self._send_lock:
            for _first, _last, payload in frames:
                self._write(payload)
        if self._closing:
            self._send(force=True)
            self._send_close()

    def _flush_loop(self) -> None:
        """Records appended without a mark (nothing waits on them) still go out promptly."""
        while not self._closing:
            time.sleep(self.flush_interval)
            if self._buffer:
                self._send()


# ---- the writer process ------------------------------------------------------------------

def _committed_ids(path: str, limit: int) -> set[str]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return {r[0] for r in conn.execute(
                "SELECT decision_id FROM decisions ORDER BY seq DESC LIMIT ?", (limit,))}
        finally:
            conn.close()
    except sqlite3.Error:
        return set()


def _open(options: dict, lock_wait: float) -> DecisionLog:
    deadline = time.monotonic() + lock_wait
    while True:
        try:
            return DecisionLog(**options)
        except LogLockedError:
            if time.monotonic() >= deadline:   # not a predecessor finishing: another daemon
                raise
            time.sleep(0.05)


def writer_main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options, acked, mode, lock_wait = json.loads(argv[0]), int(argv[1]), argv[2], float(argv[3])
    rd, wr = sys.stdin.fileno(), os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # a stray print must not corrupt the frames
    out_lock = threading.Lock()

    def send(obj) -> None:
        with out_lock:
            try:
                write_frame(wr, obj)
            except OSError:
                pass   # the daemon is gone; what it sent is committed all the same

    try:
        dlog = _open(options, lock_wait)
    except Exception as exc:  # noqa: BLE001 - the daemon raises it as its own
        send({"error": (type(exc).__name__, str(exc))})
        return 1
    # records before `offset + 1` are committed: those the daemon knew of, then any resent
    # ones the previous writer had committed without saying so
    offset = [acked]
    recent = _committed_ids(dlog.path, options["queue_max"]) if mode == "resend" else set()

    def status(state) -> dict:
        committed, healthy, last_error, failures = state
        return {"committed": offset[0] + committed, "healthy": healthy, "last_error": last_error,
                "write_failures": failures, "last_seq": dlog.last_seq, "last_hash": dlog.last_hash}

    done = threading.Event()

    def report() -> None:
        seen, sent = None, None
        while True:
            seen = dlog.wait_state(seen, 0.25)
            if (offset[0], seen) != sent:
                send(status(seen))
                sent = (offset[0], seen)
            if done.is_set():
                return

    send(status(dlog.state()))   # the hello
    reporter = threading.Thread(target=report, name="decision-log-report", daemon=True)
    reporter.start()
    timeout = 30.0
    skipping = bool(recent)
    while True:
        try:
            frame = read_frame(rd, raw=True)
            if frame is not None and frame[:1] == b"C":
                timeout = pickle.loads(frame[1:])
                break
            records = None if frame is None else _decode(frame)
        except Exception:  # noqa: BLE001 - a torn frame: the daemon died mid-write
            records = None
        if records is None:
            break   # the daemon is gone: commit what it sent
        for record in records:
            if skipping and record.get("decision_id") in recent:
                offset[0] += 1
                continue
            skipping = False
            dlog.append(record)
        dlog.flush(0)   # wake the writer now: the daemon waits on these
    ok = dlog.close(timeout)
    done.set()
    reporter.join()
    send(status(dlog.state()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(writer_main(sys.argv[1:]))
