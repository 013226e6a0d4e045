"""Helpers for the authors' and auditors' tools: a recording pipeline and the CLI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from policy.audit import DecisionLog, VersionStore
from policy.counters import SqliteCounterStore
from policy.daemon.pipeline import Pipeline
from policy.daemon.runtime import Runtime
from policy.rules.loader import policy_files
from policy.submission import Submission

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE = "【云信科技】"


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def copy_rules(dest: Path) -> Path:
    target = dest / "rules"
    shutil.copytree(ROOT / "rules", target, ignore=shutil.ignore_patterns("tests"))
    return target


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def smspolicy(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": "UTC"}
    return subprocess.run([sys.executable, "-m", "policy", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=timeout)


class Recorder:
    """The daemon's pipeline on a rules folder, writing a real decision log and version store
    (what a daemon does, minus gRPC)."""

    def __init__(self, workdir: Path, rules: Path):
        self.workdir = workdir
        self.rules = rules
        self.versions_path = workdir / "versions.db"
        self.log_path = workdir / "decisions-d1.db"
        versions = VersionStore(str(self.versions_path))
        self.runtime = Runtime(str(rules), str(workdir / "data"),
                               on_loaded=lambda lp: versions.put(lp.version, policy_files(str(rules))))
        self.counters = SqliteCounterStore(str(workdir / "counters.db"))
        for account in self.runtime.current().policy.accounts.values():
            if account.billing == "prepaid":
                self.counters.set_opening_balance(account.id, account.balance)
        self.log = DecisionLog(str(self.log_path))
        self.pipeline = Pipeline(self.runtime, self.counters, self.log)
        self._n = 0
        self._closed = False

    def send(self, to, text=f"{SIGNATURE}您的验证码是123456，5分钟内有效", account="900001",
             src_id=None, when="2026-11-26T10:00:00+08:00", **kw):
        self._n += 1
        policy = self.runtime.current().policy
        sub = Submission(request_id=f"rec-{self._n}", account_id=account, frontend_id="tests",
                         src_id=policy.accounts[account].access_code if src_id is None else src_id,
                         destinations=[to] if isinstance(to, str) else list(to),
                         content=text.encode("utf-16-be"), **kw)
        return self.pipeline.evaluate(sub, now=at(when) + self._n * 0.001)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.log.close()
        self.counters.close()
        self.runtime.close()


@pytest.fixture
def recorder(tmp_path):
    rec = Recorder(tmp_path, copy_rules(tmp_path))
    yield rec
    rec.close()
