"""Operating a real daemon: TLS, the admin token, Prometheus metrics, and the decision log as
auditors use it (verify, query, explain, replay), with shadow matches shown apart.

One daemon serves the module, configured the way an operator would: TLS on the gRPC port, an
admin token, a metrics endpoint, no folder watching (reloads come from Admin Reload only, so the
reload counts are exact).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest

from policy.api.v1 import policy_pb2 as pb
from policy.api.v1 import policy_pb2_grpc as pbg
from tests.e2e.grpc_helpers import SIGNATURE, one, request
from tests.support.procs import REPO, DaemonProc, Proc, free_port

TOKEN = "s3cret-admin-token"
LOANS = f"{SIGNATURE}贷款秒批，无抵押贷款"


def make_certificate(folder) -> tuple[str, str]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


class TlsDaemon(DaemonProc):
    """DaemonProc whose gRPC port speaks TLS: readiness and stubs go through a secure channel."""

    def start(self) -> None:
        self.proc = Proc(self.args, self.workdir / f"daemon-{time.time_ns()}.log", self.env)
        with open(self.env["SMSPOLICY_TLS_CERT"], "rb") as fh:
            self.ca = fh.read()
        self.channel = grpc.secure_channel(self.target, grpc.ssl_channel_credentials(self.ca))
        deadline = time.time() + 30
        while True:
            try:
                grpc.channel_ready_future(self.channel).result(timeout=1)
                break
            except grpc.FutureTimeoutError:
                if not self.proc.alive() or time.time() > deadline:
                    raise RuntimeError(f"daemon not ready:\n{self.proc.output()}") from None
        self.policy = pbg.PolicyServiceStub(self.channel)
        self.admin = pbg.AdminServiceStub(self.channel)


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    work = tmp_path_factory.mktemp("ops")
    cert, key = make_certificate(work)
    metrics_port = free_port()
    d = TlsDaemon(work, env={"SMSPOLICY_TLS_CERT": cert, "SMSPOLICY_TLS_KEY": key,
                             "SMSPOLICY_ADMIN_TOKEN": TOKEN, "SMSPOLICY_WATCH_RULES": "false",
                             "SMSPOLICY_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"})
    d.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    d.cert = cert
    yield d
    d.stop()


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def evaluate(d, **kw) -> pb.EvaluateResponse:
    return d.policy.Evaluate(request(**kw), timeout=10)


def smspolicy(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TZ": "UTC"}
    return subprocess.run([sys.executable, "-m", "policy", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)


def metrics(d) -> str:
    with urllib.request.urlopen(d.metrics_url, timeout=5) as resp:
        return resp.read().decode()


def sample(text: str, name: str, **labels) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


def test_tls_is_required_on_the_grpc_port(ops):
    assert one(evaluate(ops)).action == pb.ACTION_ACCEPT
    plain = grpc.insecure_channel(ops.target)
    with pytest.raises(grpc.RpcError) as e:
        pbg.PolicyServiceStub(plain).Evaluate(request(), timeout=3)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    plain.close()


def test_admin_calls_need_the_token(ops):
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
        with pytest.raises(grpc.RpcError) as e:
            ops.admin.Status(pb.StatusRequest(), metadata=metadata, timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        ops.admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(add=["13800138055"]), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert one(evaluate(ops, dests=["13800138055"])).action == pb.ACTION_ACCEPT   # nothing was added
    status = ops.admin.Status(pb.StatusRequest(), metadata=AUTH, timeout=5)
    assert status.rules_version and status.last_reload_outcome == "ok"


def test_metrics_show_decisions_latency_reloads_version_and_log_failures(ops):
    evaluate(ops, dests=["13900000001"])
    evaluate(ops, dests=["13800138000"], text="没有签名")
    good = ops.admin.Reload(pb.ReloadRequest(), metadata=AUTH, timeout=30)
    assert good.ok
    policy = ops.rules_dir / "policy.yaml"
    original = policy.read_bytes()
    policy.write_text("rules: [\n", encoding="utf-8")
    try:
        assert not ops.admin.Reload(pb.ReloadRequest(), metadata=AUTH, timeout=30).ok
    finally:
        policy.write_bytes(original)
    text = metrics(ops)
    assert sample(text, "smspolicy_decisions_total", action="reject", code="MA:0001", rule="global-blacklist") >= 1
    assert sample(text, "smspolicy_decisions_total", action="accept", code="", rule="") >= 1
    assert sample(text, "smspolicy_submit_refusals_total", code="17", rule="submit-signature-not-registered") >= 1
    assert sample(text, "smspolicy_evaluation_seconds_count") >= 3
    assert sample(text, "smspolicy_evaluation_seconds_bucket", le="+Inf") >= 3
    assert sample(text, "smspolicy_reloads_total", outcome="ok") == 1
    assert sample(text, "smspolicy_reloads_total", outcome="refused") == 1
    assert sample(text, "smspolicy_rules_version_info", version=good.rules_version) == 1
    assert sample(text, "smspolicy_decision_log_write_failures") == 0


def _logged(ops, *args) -> list[dict]:
    proc = smspolicy("audit", "query", ops.data_dir / "decisions-d1.db", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_decision_log_verifies_and_finds_decisions_by_number_and_code(ops):
    resp = evaluate(ops, dests=["13800138000", "13900000005"])
    found = []
    deadline = time.time() + 10
    while not found and time.time() < deadline:   # the log is written in the background
        found = _logged(ops, "--number", "13900000005", "--code", "MA:0001")
        time.sleep(0.1)
    assert [r["decision_id"] for r in found] == [resp.decision_id]
    assert found[0]["results"]["recipients"][1]["rule_id"] == "global-blacklist"
    proc = smspolicy("audit", "verify", *sorted(ops.data_dir.glob("decisions-*.db")))
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("OK: ")


def test_shadow_matches_are_shown_apart_in_query_and_explain(ops):
    resp = evaluate(ops, dests=["13800138000"], text=LOANS)
    d = one(resp)
    assert d.action == pb.ACTION_ACCEPT and list(d.shadow_rule_ids) == ["trial-loan-ads"]
    time.sleep(0.3)
    proc = smspolicy("audit", "query", ops.data_dir / "decisions-d1.db", "--shadow")
    header, *rows = proc.stdout.splitlines()
    assert header.split()[-2:] == ["SHADOW", "VERSION"]
    row = next(r for r in rows if "trial-loan-ads" in r)
    cells = row.split()
    assert cells[-2] == "trial-loan-ads" and "trial-loan-ads" not in cells[:-2]
    out = smspolicy("explain", "--target", ops.target, "--tls-ca", ops.cert, "--account", "900001",
                    "--src-id", "106900001", "--to", "13800138000", "--text", LOANS)
    assert out.returncode == 0, out.stderr
    assert "trial-loan-ads" in out.stdout and "[shadow: recorded, never enforced]" in out.stdout
    assert "decision: accept via ch-cmcc; shadow matches: trial-loan-ads" in out.stdout


def test_the_daemons_log_replays_exactly_under_its_versions(ops):
    evaluate(ops, dests=["13700000001", "1380013800", "19999999999"])
    time.sleep(0.3)
    proc = smspolicy("replay", ops.data_dir / "decisions-d1.db", "--versions", ops.data_dir / "versions.db",
                     "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: every decision reproduced exactly" in proc.stdout
