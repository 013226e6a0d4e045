"""The rule set in force, and swapping in a new one without stopping evaluation.

A `LoadedPolicy` is immutable once built: the PolicySet, its fact builder and one compiled
durable_rules evaluator per stage. Reload builds a complete new one (after validating the folder
in a subprocess, so a rule that crashes or hangs the engine can only kill the child), then swaps
one reference. Calls in flight keep the object they started with; the old evaluators are closed
after a grace period, and a caller that still races with the close re-reads `current()`.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ..counters import LimitPlan
from ..engine.durable_engine import DurableRules
from ..engine.validate import validate_rules_in_subprocess
from ..facts.builder import FactBuilder
from ..facts.filelist import FileBlacklist
from ..facts.lists import ApiBlacklist
from ..facts.segments import SegmentDB
from ..rules.errors import PolicyError
from ..rules.loader import load_policy
from ..rules.model import PolicySet
from ..settings import Settings

log = logging.getLogger("smspolicy.runtime")

RETIRE_AFTER_SECONDS = 10.0


@dataclass
class LoadedPolicy:
    policy: PolicySet
    facts: FactBuilder
    submit_rules: DurableRules
    recipient_rules: DurableRules
    limits: LimitPlan
    tz: ZoneInfo
    loaded_at: float

    @property
    def version(self) -> str:
        return self.policy.version

    def close(self) -> None:
        self.submit_rules.close()
        self.recipient_rules.close()


class ReloadOutcome:
    def __init__(self, ok: bool, version: str, errors: list[str]):
        self.ok, self.version, self.errors = ok, version, errors
        self.at = time.time()


class Runtime:
    """Holds the current LoadedPolicy and the resources that outlive a reload."""

    def __init__(self, rules_dir: str, data_dir: str, segment_db: str = "", shard_size: int = 48,
                 validate_timeout: float = 30.0, on_loaded=None,
                 match_cache: int = Settings.match_cache, api_blacklist=None):
        self.rules_dir = rules_dir
        self.shard_size = shard_size
        self.match_cache = match_cache
        self.validate_timeout = validate_timeout
        self.segments = SegmentDB.load(segment_db or None)
        # the daemon passes the one it shares with other daemons (server.make_api_blacklist)
        self.api_blacklist = api_blacklist or ApiBlacklist(os.path.join(data_dir, "api_blacklist.db"))
        self._file_blacklist: FileBlacklist | None = None
        self._lock = threading.Lock()  # one reload at a time
        self._current: LoadedPolicy | None = None
        self._on_loaded = on_loaded
        self.last_outcome: ReloadOutcome | None = None
        policy = load_policy(rules_dir)  # at start a bad folder is fatal: nothing to fall back on
        self._install(self._build(policy))
        self.last_outcome = ReloadOutcome(True, policy.version, [])

    def current(self) -> LoadedPolicy:
        return self._current  # type: ignore[return-value]

    def _file_list_for(self, policy: PolicySet) -> FileBlacklist | None:
        fb = policy.file_blacklist
        if fb is None:
            if self._file_blacklist:
                self._file_blacklist.stop()
                self._file_blacklist = None
            return None
        old = self._file_blacklist
        if old is None or os.path.realpath(old.folder) != os.path.realpath(fb.folder):
            if old:
                old.stop()
            self._file_blacklist = FileBlacklist(fb.folder, fb.poll_seconds)
        else:  # the same folder: keep its numbers, but poll as the new rules say
            old.set_poll_seconds(fb.poll_seconds)
        return self._file_blacklist

    def _build(self, policy: PolicySet) -> LoadedPolicy:
        facts = FactBuilder(policy, self.segments, self.api_blacklist, self._file_list_for(policy))
        submit = [r for r in policy.rules if r.stage == "submit"]
        recipient = [r for r in policy.rules if r.stage == "recipient"]
        tag = policy.version[:8]
        return LoadedPolicy(
            policy=policy,
            facts=facts,
            submit_rules=DurableRules(submit, f"submit-{tag}", self.shard_size,
                                      cache_size=self.match_cache),
            recipient_rules=DurableRules(recipient, f"recipient-{tag}", self.shard_size,
                                         cache_size=self.match_cache),
            limits=LimitPlan(policy.limits),
            tz=ZoneInfo(policy.platform.timezone),
            loaded_at=time.time(),
        )

    def _install(self, loaded: LoadedPolicy) -> None:
        old, self._current = self._current, loaded
        if old is not None and old is not loaded:
            timer = threading.Timer(RETIRE_AFTER_SECONDS, old.close)
            timer.daemon = True
            timer.start()
        if self._on_loaded:
            self._on_loaded(loaded)

    def reload(self) -> ReloadOutcome:
        """Validate the folder as a whole, then swap; on any error keep serving the last good set."""
        with self._lock:
            errors = validate_rules_in_subprocess(self.rules_dir, timeout=self.validate_timeout)
            if not errors:
                try:
                    policy = load_policy(self.rules_dir)
                    if policy.version == self.current().version:
                        outcome = ReloadOutcome(True, policy.version, [])
                        self.last_outcome = outcome
                        return outcome
                    self._install(self._build(policy))
                except PolicyError as e:  # the folder changed again between validation and load
                    errors = [str(p) for p in e.problems]
                except Exception as e:  # noqa: BLE001 - a reload must never take the daemon down
                    log.exception("reload failed")
                    errors = [f"internal error while loading: {e}"]
            if errors:
                log.error("rules reload refused, still serving %s:\n  %s", self.current().version,
                          "\n  ".join(errors))
                outcome = ReloadOutcome(False, self.current().version, errors)
            else:
                log.info("rules version %s now serving", self.current().version)
                outcome = ReloadOutcome(True, self.current().version, [])
            self.last_outcome = outcome
            return outcome

    def close(self) -> None:
        if self._file_blacklist:
            self._file_blacklist.stop()
        if self._current:
            self._current.close()
        self.api_blacklist.close()
