"""kill -9 of the forwarder mid-stream: every message ends with exactly one report."""
from __future__ import annotations

import time

from tests.forwarder.support import ForwarderProc
from tests.simulator.support import SimulatorProc


def test_kill_9_mid_stream_loses_and_duplicates_nothing(tmp_path):
    upstream = SimulatorProc(tmp_path / "up", accounts="SIM004:pw4",
                             extra=["--report-delay", "0.3", "--delivrd-ratio", "0.7", "--seed", "5"])
    try:
        host, port = upstream.cmpp
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "r.yaml").write_text(f"""
accounts:
  - {{id: "900001", name: one, secret: "888888", access_code: "106900001"}}
channels:
  - {{id: ch-k, name: K, carriers: [cmcc], host: {host}, port: {port}, account: SIM004,
     secret: pw4, version: 0x30, window: 4, rate: 25}}
""")
        fwd = ForwarderProc(tmp_path, rules, tmp_path / "var")
        ids = [fwd.put("ch-k", f"crash test {i}", dest=f"1380000{i:04d}") for i in range(30)]
        upstream.wait(lambda: len(upstream.submits()) >= 12, what="a dozen submits")
        fwd.kill9()
        upstream.wait(lambda: not upstream.control("stats")["connections"], what="disconnect")
        sent_before = len(upstream.submits())
        assert sent_before < 30, "the kill came too late to test anything"
        fwd.start()
        flat = [i for one in ids for i in one]
        stats = fwd.wait_stats(flat, timeout=15)
        time.sleep(0.8)  # late duplicates would show up now
        stats = fwd.stats(flat)
        assert len(stats) == 30
        assert set(stats) <= {"DELIVRD", "UNDELIV"}
        with fwd.store._db as db:
            states = db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        assert states == [("done", 30)]
        dests = [s["dests"][0] for s in upstream.submits()]
        assert set(dests) == {f"1380000{i:04d}" for i in range(30)}
        fwd.stop()
    finally:
        upstream.stop()
