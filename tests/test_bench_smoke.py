"""The benchmark harness itself works: its workload passes `smspolicy check` and is deterministic.

Figures are measured by `make bench` (BENCHMARKS.md), never asserted here.
"""
import hashlib
from pathlib import Path

from bench.workload import QUICK, Workload
from policy.rules.loader import load_policy


def test_workload_loads_and_is_reproducible(tmp_path):
    a = Workload(QUICK).write(tmp_path / "a")
    b = Workload(QUICK).write(tmp_path / "b")
    policy = load_policy(a)
    assert len(policy.rules) >= 40 and len(policy.accounts) >= 10
    assert _digest(a) == _digest(b)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
