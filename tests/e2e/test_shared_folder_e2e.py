"""Several daemons on one machine and one data folder (DESIGN.md: "several with SO_REUSEPORT"),
the counters in shared SQLite mode: whichever daemon a call reaches, the limits, the connection
leases behind max_connections and the API blacklist are the same."""
from __future__ import annotations

from policy.api.v1 import policy_pb2 as pb
from tests.support.procs import DaemonProc, copy_rules

from .grpc_helpers import SIGNATURE, eventually, fresh_number, login, one, request


def test_daemons_on_one_data_folder_share_limits_leases_and_the_api_blacklist(tmp_path):
    rules, shared = copy_rules(tmp_path), tmp_path / "var"
    daemons = []
    try:
        for name in ("a", "b"):
            daemons.append(DaemonProc(tmp_path / name, rules_dir=rules,
                                      extra=["--data", str(shared), "--daemon-id", name],
                                      env={"SMSPOLICY_COUNTERS_SQLITE_MODE": "shared"}))
        a, b = daemons

        def send(d, **kw):
            return one(d.policy.Evaluate(request(**kw), timeout=10))

        number, text = fresh_number(), f"{SIGNATURE}您的验证码是515151，5分钟内有效"
        codes = [send(daemons[i % 2], dests=[number], text=text).code for i in range(6)]
        assert codes == [""] * 5 + ["MA:0042"]          # one limit of 5, counted across both

        opened = [login(daemons[i % 2]) for i in range(4)]   # 900001 allows 4 connections
        assert [r.status for r in opened] == [0, 0, 0, 0]
        assert login(a).status == 21 and login(b).status == 21
        assert b.policy.EndSession(pb.SessionRequest(session_id=opened[0].session_id), timeout=5).ok
        assert login(a).status == 0

        listed = fresh_number()
        a.admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(add=[listed]), timeout=5)
        assert send(a, dests=[listed]).code == "MA:0039"
        assert eventually(lambda: send(b, dests=[listed]).code == "MA:0039")
        b.admin.UpdateApiBlacklist(pb.UpdateApiBlacklistRequest(remove=[listed]), timeout=5)
        assert send(b, dests=[listed]).code == ""
        assert eventually(lambda: send(a, dests=[listed]).code == "")
    finally:
        for d in daemons:
            d.stop()
