"""The soak with faults in CI's size: 5,000 messages over 8 connections while the front-end,
the forwarder and the daemon are each killed -9 once, upstream links drop twice and the
simulator answers late twice. The full size is `make soak` (100,000 messages)."""
from __future__ import annotations

import json
import os

import pytest

from tests.soak.harness import Plan, run_soak


@pytest.mark.slow
# SOAK_SEED=7 replays another fault plan and traffic mix
@pytest.mark.parametrize("seed", [int(os.environ.get("SOAK_SEED", "1"))])
def test_soak_with_faults_loses_and_duplicates_nothing(tmp_path, seed):
    plan = Plan(messages=5000, connections=8, kills=3, drops=2, lates=2, seed=seed, settle=90)
    figures = run_soak(tmp_path / "soak", plan, log=print)
    failures = figures.pop("failures")
    summary = json.dumps(figures, indent=1, ensure_ascii=False)
    assert not failures, "\n".join(failures) + "\n" + summary
    assert [f["action"] for f in figures["faults"]].count("daemon") == 1, summary
    assert {f["action"] for f in figures["faults"]} == {"gateway", "forwarder", "daemon", "drop",
                                                        "late"}, summary
    # the kills hit traffic: every connection was dropped by the front-end's death and had
    # to log in again, and SUBMITs got no answer or Result 8 on the way
    assert figures["reconnects"] >= plan.connections, summary
    assert figures["unanswered_resent"] + figures["result_8"] > 0, summary
    assert figures["reports_received"] >= figures["reports_expected"] > 5000, summary
