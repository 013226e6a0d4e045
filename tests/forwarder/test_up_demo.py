"""`smspolicy up` starts the whole product, `smspolicy demo` runs against it, SIGTERM stops all."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from tests.forwarder.test_end_to_end import _rules_copy
from tests.support.procs import REPO, free_port


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone for our purposes: it no longer runs
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1].startswith("Z")


def test_up_then_demo_then_sigterm(tmp_path):
    cmpp, http = free_port(), free_port()
    rules = _rules_copy(tmp_path / "rules", cmpp, http, False, 0)
    ports = {"SMSPOLICY_LISTEN": f"127.0.0.1:{free_port()}",
             "SMSPOLICY_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
             "SMSPOLICY_SIMULATOR_LISTEN": f"127.0.0.1:{cmpp}",
             "SMSPOLICY_HTTP_LISTEN": f"127.0.0.1:{free_port()}"}
    ports["SMSPOLICY_POLICY_TARGET"] = ports["SMSPOLICY_LISTEN"]
    env = {**os.environ, **ports, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "up.out", "wb")
    up = subprocess.Popen([sys.executable, "-m", "policy", "up", "--rules", str(rules), "--data",
                           str(tmp_path / "var")], cwd=REPO, env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while "all up" not in (out := (tmp_path / "up.out").read_text()):
            assert up.poll() is None and time.time() < deadline, out
            time.sleep(0.1)
        assert f"CMPP gateway listening on {ports['SMSPOLICY_GATEWAY_LISTEN']}" in out
        assert f"HTTP channel on http://127.0.0.1:{http}/" in out
        pids = {int(p) for p in re.findall(r"\(pid (\d+)\)", out)}
        assert len(pids) == 5  # daemon, simulator, front-end, HTTP API, forwarder

        demo = subprocess.run([sys.executable, "-m", "policy", "demo", "--rules", str(rules),
                               "--gateway", ports["SMSPOLICY_GATEWAY_LISTEN"], "--wait", "20"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        text = demo.stdout
        assert demo.returncode == 0, text + demo.stderr
        sections = dict(re.findall(r"== (.*?)\n(.*?)(?=\n==|\Z)", text, re.S))
        assert "DELIVRD" in sections["accepted, registered signature"]
        assert "MA:0001" in sections["blacklisted number"]
        assert "MA:0002" in sections["keyword hit"]
        group = sections["group send"]
        assert group.count("DELIVRD") == 2 and "MA:0023" in group
        assert "DELIVRD  x3 parts" in sections[
            "long message (customer sends 3 parts, forwarder re-splits)"]
        repeated = sections["limit breach by repetition (same content, same number, 6 times)"]
        assert repeated.count("DELIVRD") == 5 and repeated.count("MA:0042") == 1
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(30)
        log.close()
    assert code == 0
    assert all(_gone(pid) for pid in pids)
    assert "stopped" in (tmp_path / "up.out").read_text()
