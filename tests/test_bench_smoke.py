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


def test_bench_refuses_an_unknown_section(capsys):
    import pytest

    from bench.__main__ import main
    with pytest.raises(SystemExit) as e:
        main(["--only", "engine,nonsense"])
    assert e.value.code == 2
    assert "unknown section(s) nonsense" in capsys.readouterr().err


def test_table_puts_baseline_and_ratio_before_target():
    from bench.__main__ import table
    text = table([("a metric", 1234.5, "≥ 1: met", 617.25, 2.0)])
    head, rule, row = text.splitlines()
    assert [c.strip() for c in head.strip("|").split("|")] == ["metric", "value", "baseline", "ratio", "target"]
    assert [c.strip() for c in row.strip("|").split("|")] == ["a metric", "1,234", "617", "2.00", "≥ 1: met"]


def test_zen_translation_agrees_with_durable_and_a_wrong_one_is_caught(tmp_path):
    """The peer-engine benchmark's own check: the zen decision tables decide every message of a
    sample as durable_rules does, and a translation that lets shadow rules decide is refused."""
    import pytest
    from bench import engine_vs_zen as ez
    from bench.pipeline_bench import START, STEP, build_runtime

    w = Workload(QUICK)
    rules = w.write(tmp_path / "rules")
    runtime = build_runtime(rules, tmp_path / "var")
    try:
        loaded = runtime.current()

        def is_shadow(r):
            return r.mode == "shadow"

        stage_rules = {s: [r for r in loaded.policy.rules if r.stage == s] for s in ("submit", "recipient")}
        durable = (ez.DurableStage(loaded.submit_rules, is_shadow), ez.DurableStage(loaded.recipient_rules, is_shadow))
        zen = (ez.ZenStage(stage_rules["submit"], is_shadow, "submit"),
               ez.ZenStage(stage_rules["recipient"], is_shadow, "recipient"))
        sample = ez.build_sample(loaded, list(w.messages(400)), START, STEP)
        counts = ez.check_agreement(durable, zen, sample)
        assert counts["messages"] == 400 and counts["decided by a rule"] > 0 and counts["shadow hits"] > 0

        wrong = (zen[0], ez.ZenStage(stage_rules["recipient"], lambda r: False, "recipient"))
        with pytest.raises(ez.Disagreement, match="disagree on"):
            ez.check_agreement(durable, wrong, sample)
    finally:
        runtime.close()


def test_grpc_server_forms_measures_each_server(capsys):
    from bench import grpc_server_forms
    assert grpc_server_forms.main(["--calls", "60", "--runs", "1", "--in-flight", "2",
                                   "--servers", "sync-1,aio"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " median " in ln]
    assert [ln.split()[4] for ln in lines] == ["sync-1", "aio"]
    assert all(float(ln.split()[5]) > 0 and "errors" not in ln for ln in lines)


def test_log_wait_micro_reports_both_writers(capsys):
    from bench import log_wait_micro
    assert log_wait_micro.main(["--records", "20", "--intervals", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [(ln.split()[1], ln.split()[5]) for ln in lines] == [
        ("thread", "idle:"), ("thread", "busy:"), ("process", "idle:"), ("process", "busy:")]
