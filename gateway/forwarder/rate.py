"""Evenly spaced sending at a channel's configured rate (messages per second)."""
from __future__ import annotations

import asyncio


class RateLimiter:
    """`await acquire()` before each SUBMIT. No bursts: the n-th send is due n/rate seconds
    after the first of a busy period, which is what an upstream's flow control counts."""

    def __init__(self, rate: float):
        self.rate = rate
        self._next = 0.0

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = max(self._next, now)
        self._next = due + 1.0 / self.rate
        if due > now:
            await asyncio.sleep(due - now)
