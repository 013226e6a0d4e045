"""The daemon's evaluation pipeline on one rules folder, inside this process.

Rule tests and `smspolicy explain` must decide exactly as the daemon would, so they run the
daemon's own Runtime and Pipeline: the same loader, fact builder, compiled rules and limit plan.
What differs is only what would leave traces: counters live in a throwaway SQLite file in a
temporary folder (with the API blacklist), there is no decision log and no gRPC.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime

from ..counters import RecipientCharge, SqliteCounterStore
from ..daemon.decision import Decision
from ..daemon.pipeline import Pipeline, content_key
from ..daemon.runtime import LoadedPolicy, Runtime
from ..rules.model import PolicySet
from ..submission import Submission


class OfflinePolicy:
    def __init__(self, rules_dir: str, segment_db: str = ""):
        """Loads `rules_dir` (PolicyError when it is not valid)."""
        self._tmp = tempfile.mkdtemp(prefix="smspolicy-offline-")
        try:
            self.runtime = Runtime(rules_dir, self._tmp, segment_db)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        self.pipeline = Pipeline(self.runtime, counters=None, decision_log=None)
        self._store_path = ""
        self._generation = 0
        self._presets = itertools.count(1)
        self.reset_counters()

    @property
    def loaded(self) -> LoadedPolicy:
        return self.runtime.current()

    @property
    def policy(self) -> PolicySet:
        return self.runtime.current().policy

    def reset_counters(self) -> None:
        """Start again from empty counters, no known request ids and the opening balances."""
        old = self.pipeline.counters
        if old is not None:
            old.close()
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(self._store_path + suffix)
                except FileNotFoundError:
                    pass
        self._generation += 1
        self._store_path = os.path.join(self._tmp, f"counters-{self._generation}.db")
        store = SqliteCounterStore(self._store_path)
        for account in self.policy.accounts.values():
            if account.billing == "prepaid":  # as the daemon does on its first load
                store.set_opening_balance(account.id, account.balance)
        self.pipeline.counters = store

    def evaluate(self, sub: Submission, now: float, explain: bool = False) -> Decision:
        return self.pipeline.evaluate(sub, now=now, explain=explain)

    def preset_counter(self, sub: Submission, now: float, limit_id: str, destination: str,
                       value: int) -> str:
        """Count `value` into the bucket that limit `limit_id` reads for `destination` of `sub`
        at `now`, as if earlier messages had been accepted; returns the counter key.

        ValueError when the limit does not exist or does not apply to that recipient (another
        account, a channel scope without a route, a channel the limit does not name).
        """
        loaded = self.loaded
        policy = loaded.policy
        limit = next((lim for lim in policy.limits if lim.id == limit_id), None)
        if limit is None:
            known = ", ".join(lim.id for lim in policy.limits) or "none"
            raise ValueError(f"no limit {limit_id!r} in the rules (limits: {known})")
        account = policy.accounts.get(sub.account_id)
        if account is None:
            raise ValueError(f"unknown account {sub.account_id!r}")
        local_now = datetime.fromtimestamp(now, loaded.tz)
        mfacts = loaded.facts.message_facts(sub, account, local_now)
        rfacts = loaded.facts.recipient_facts(mfacts, destination, account)
        channel = rfacts["route__channel"]
        if limit not in loaded.limits.applicable(account.id, channel):
            raise ValueError(f"limit {limit_id!r} does not apply to account {account.id} "
                             f"sending to {destination} (route {channel or 'none'})")
        content_hash = content_key(mfacts)
        (inc,) = [i for i in loaded.limits.increments(account.id, channel, rfacts["recipient__number"],
                                                        content_hash, mfacts["message__segments"],
                                                        local_now) if i.limit_id == limit_id]
        preset = replace(inc, amount=value, limit=max(value, 0))  # always fits
        self.pipeline.counters.charge(f"preset-{next(self._presets)}",
                                      [RecipientCharge(0, [preset], 0)], None, 0, now)
        return inc.key

    def close(self) -> None:
        if self.pipeline.counters is not None:
            self.pipeline.counters.close()
            self.pipeline.counters = None
        self.runtime.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> OfflinePolicy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
