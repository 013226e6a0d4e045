"""Each signed POST is accepted once.

The daemon refuses a time stamp off by more than the skew, so a captured request can only be
replayed within that window; for POSTs (a replayed submit would send again) this guard closes
the window too: a signature already used for an accepted request is refused until its time
stamp has left the window (then the daemon refuses it). GETs only read, and a client may well
ask twice in one second. A request refused for another reason frees its signature, so that the client may send
the same request again (after a 503 or 429, say). The guard is per process: behind several
API processes, sticky routing per account keeps it whole.
"""
from __future__ import annotations


class ReplayGuard:
    def __init__(self, skew: float):
        self.skew = skew
        self._until: dict[str, float] = {}   # signature -> when it may be forgotten
        self._next_sweep = 0.0

    def claim(self, signature: str, timestamp: int, now: float) -> bool:
        """True for a signature not seen in the window (it is now taken); False for a replay."""
        if now >= self._next_sweep:
            self._until = {s: t for s, t in self._until.items() if t > now}
            self._next_sweep = now + max(1.0, self.skew / 10)
        if self._until.get(signature, 0.0) > now:
            return False
        self._until[signature] = timestamp + self.skew + 1
        return True

    def release(self, signature: str) -> None:
        self._until.pop(signature, None)

    def __len__(self) -> int:
        return len(self._until)
