"""Hot reload of a real daemon process: edits, refusals, deletions, a symlink swap of the whole
folder (how Kubernetes updates a ConfigMap), SIGHUP, Admin Reload, the file-blacklist folder, and
the version store that keeps every version loaded.

Two daemons serve the module: `linked` watches a rules folder reached through a symlink
(current -> v1); `manual` does not watch, so only SIGHUP and Admin Reload can reload it. Each test
leaves the rules as it found them (or, for the swap, says what it leaves).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policy.api.v1 import policy_pb2 as pb
from policy.audit import VersionStore
from policy.tools.replay import materialize
from tests.e2e.grpc_helpers import SIGNATURE, one, request
from tests.support.procs import REPO, SHIPPED_RULES, DaemonProc

LOANS = f"{SIGNATURE}贷款秒批，无抵押贷款"


def wait_for(probe, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def decide(daemon, **kw) -> tuple[str, str]:
    d = one(daemon.policy.Evaluate(request(**kw), timeout=10))
    return (d.code or ("hold" if d.action == pb.ACTION_HOLD else "accept"), d.rule_id)


def version(daemon) -> str:
    return daemon.admin.Status(pb.StatusRequest(), timeout=5).rules_version


def status(daemon) -> pb.StatusResponse:
    return daemon.admin.Status(pb.StatusRequest(), timeout=5)


def serving(daemon) -> bool:
    resp = health_pb2_grpc.HealthStub(daemon.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return resp.status == health_pb2.HealthCheckResponse.SERVING


def copy_rules(dest) -> None:
    shutil.copytree(SHIPPED_RULES, dest, ignore=shutil.ignore_patterns("tests"))


def replace_in(path, old: str, new: str) -> bytes:
    data = path.read_bytes()
    text = data.decode("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return data


SEEN_VERSIONS: list[str] = []


def note(v: str) -> str:
    if v not in SEEN_VERSIONS:
        SEEN_VERSIONS.append(v)
    return v


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    work = tmp_path_factory.mktemp("linked")
    sets = work / "rulesets"
    sets.mkdir()
    copy_rules(sets / "v1")
    os.symlink("v1", sets / "current")
    d = DaemonProc(work, rules_dir=sets / "current")
    note(version(d))
    yield d
    d.stop()


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    work = tmp_path_factory.mktemp("manual")
    copy_rules(work / "rules")
    d = DaemonProc(work, rules_dir=work / "rules", env={"SMSPOLICY_WATCH_RULES": "false"})
    yield d
    d.stop()


# ------------------------------------------------------------------------- watched folder
def test_an_in_place_edit_of_a_rule_takes_effect_without_restart(linked):
    policy = linked.rules_dir / "policy.yaml"
    before = version(linked)
    assert decide(linked, text=LOANS) == ("accept", "")
    original = replace_in(policy, "    mode: shadow\n", "    mode: enforce\n")
    try:
        wait_for(lambda: decide(linked, text=LOANS) == ("MA:0002", "trial-loan-ads"), "the edit to apply")
        assert note(version(linked)) != before
        assert status(linked).last_reload_outcome == "ok"
    finally:
        policy.write_bytes(original)
    wait_for(lambda: version(linked) == before, "the original rules again")
    assert decide(linked, text=LOANS) == ("accept", "")


@pytest.mark.parametrize("old,new,reason", [
    ("    when: {fact: recipient.blacklisted.global, eq: true}\n",
     "    when: {fact: recipient.blacklisted.globall, eq: true}\n", "recipient.blacklisted.globall"),
    ("  # --- the number itself ---\n", "  # --- the number itself ---\n  - id: [oops\n", "YAML syntax error"),
])
def test_a_bad_edit_is_refused_and_the_last_good_version_keeps_serving(linked, old, new, reason):
    policy = linked.rules_dir / "policy.yaml"
    before = version(linked)
    original = replace_in(policy, old, new)
    text = original.decode("utf-8")
    line = text[:text.index(old)].count("\n") + 1
    where = f"policy.yaml:{line}:" if "fact" in old else "policy.yaml:"
    try:
        def refused():
            s = status(linked)
            return s.last_reload_outcome == "refused" and any(
                e.startswith(where) and reason in e for e in s.last_reload_errors) and s
        s = wait_for(refused, "the refusal")
        assert s.rules_version == before
        assert decide(linked, dests=["13900000001"]) == ("MA:0001", "global-blacklist")
        assert serving(linked)
    finally:
        policy.write_bytes(original)
    wait_for(lambda: status(linked).last_reload_outcome == "ok", "the repaired folder to load")
    assert version(linked) == before


def test_a_deleted_file_takes_effect(linked):
    templates = linked.rules_dir / "templates.yaml"
    filed = dict(account="900007", src_id="106900007")
    assert decide(linked, **filed) == ("accept", "")
    data = templates.read_bytes()
    templates.unlink()
    try:
        wait_for(lambda: decide(linked, **filed) == ("MA:0024", "content-not-filed"), "the deletion to apply")
        note(version(linked))
    finally:
        templates.write_bytes(data)
    wait_for(lambda: decide(linked, **filed) == ("accept", ""), "the file to be back")


def test_a_file_dropped_into_the_file_blacklist_folder_applies_without_a_reload(linked):
    before = version(linked)
    dropped = linked.rules_dir / "blacklist-files" / "complaints-today.txt"
    assert decide(linked, dests=["13800138077"]) == ("accept", "")
    dropped.write_text("13800138077\n", encoding="utf-8")
    try:
        wait_for(lambda: decide(linked, dests=["13800138077"]) == ("MA:0034", "file-blacklist"),
                 "the file blacklist to pick the file up")
        assert version(linked) == before
    finally:
        dropped.unlink()
    wait_for(lambda: decide(linked, dests=["13800138077"]) == ("accept", ""), "the number to be off the list")


def test_a_symlink_swap_of_the_whole_folder(linked):
    """Leaves `current` pointing at v2 (v1 deleted), which differs by one blacklisted number."""
    sets = linked.rules_dir.parent
    copy_rules(sets / "v2")
    replace_in(sets / "v2" / "lists.yaml", '      - "13900000001"\n', '      - "13900000001"\n      - "13800138066"\n')
    assert decide(linked, dests=["13800138066"]) == ("accept", "")
    subprocess.run(["ln", "-sfn", "v2", "current.new"], cwd=sets, check=True)
    subprocess.run(["mv", "-T", "current.new", "current"], cwd=sets, check=True)
    wait_for(lambda: decide(linked, dests=["13800138066"]) == ("MA:0001", "global-blacklist"), "the swap")
    note(version(linked))
    shutil.rmtree(sets / "v1")   # as Kubernetes removes the old ConfigMap data
    assert decide(linked, dests=["13800138066"]) == ("MA:0001", "global-blacklist")
    # the file blacklist now reads the new folder
    (sets / "v2" / "blacklist-files" / "late.txt").write_text("13800138078\n", encoding="utf-8")
    wait_for(lambda: decide(linked, dests=["13800138078"]) == ("MA:0034", "file-blacklist"),
             "the new folder's file blacklist")
    assert serving(linked)


def test_the_version_store_holds_every_version_loaded_and_an_old_one_checks(linked, tmp_path):
    store = VersionStore(str(linked.data_dir / "versions.db"))
    stored = [v for v, _, _ in store.list()]
    assert len(SEEN_VERSIONS) >= 4
    assert set(SEEN_VERSIONS) <= set(stored)
    first = SEEN_VERSIONS[0]
    folder = materialize(store, first, str(tmp_path / "old"))
    proc = subprocess.run([sys.executable, "-m", "policy", "check", folder],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert f"version {first}" in proc.stdout


# ------------------------------------------------------------------------- SIGHUP and Admin Reload
def test_sighup_reloads(manual):
    policy = manual.rules_dir / "policy.yaml"
    before = version(manual)
    original = replace_in(policy, "    mode: shadow\n", "    mode: enforce\n")
    try:
        time.sleep(0.6)   # three watch intervals of the other daemon: this one does not watch
        assert version(manual) == before and decide(manual, text=LOANS) == ("accept", "")
        os.kill(manual.proc.popen.pid, signal.SIGHUP)
        wait_for(lambda: decide(manual, text=LOANS) == ("MA:0002", "trial-loan-ads"), "SIGHUP to reload")
    finally:
        policy.write_bytes(original)
    os.kill(manual.proc.popen.pid, signal.SIGHUP)
    wait_for(lambda: version(manual) == before, "the original rules again")


def test_admin_reload_applies_a_good_folder_and_refuses_a_bad_one(manual):
    policy = manual.rules_dir / "policy.yaml"
    before = version(manual)
    original = replace_in(policy, "    mode: shadow\n", "    mode: enforce\n")
    try:
        resp = manual.admin.Reload(pb.ReloadRequest(), timeout=30)
        assert resp.ok and resp.rules_version != before and not resp.errors
        assert decide(manual, text=LOANS) == ("MA:0002", "trial-loan-ads")
        good = resp.rules_version
        policy.write_text("rules: [\n", encoding="utf-8")
        resp = manual.admin.Reload(pb.ReloadRequest(), timeout=30)
        assert not resp.ok and resp.rules_version == good
        assert any(e.startswith("policy.yaml:2:1:") and "YAML syntax error" in e for e in resp.errors), resp.errors
        s = status(manual)
        assert s.last_reload_outcome == "refused" and list(s.last_reload_errors) == list(resp.errors)
        assert decide(manual, text=LOANS) == ("MA:0002", "trial-loan-ads") and serving(manual)
    finally:
        policy.write_bytes(original)
    resp = manual.admin.Reload(pb.ReloadRequest(), timeout=30)
    assert resp.ok and resp.rules_version == before
