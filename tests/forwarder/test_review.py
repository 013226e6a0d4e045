"""`smspolicy review` on held messages, with the forwarder and simulator running."""
from __future__ import annotations

import subprocess
import sys
import time

from gateway.store import Message, Recipient
from tests.support.procs import REPO


def _review(fwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policy", "review", "--data", str(fwd.data), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=30)


def _hold(fwd, text: str, msg_id: int) -> int:
    msg = Message(f"h{msg_id}", "dec-h", "900001", "106900001", "svc", 8, text.encode("utf-16-be"),
                  True, time.time())
    fwd.store.accept_message(msg, [Recipient("13800138111", (msg_id,), "hold", "ch-a")])
    return next(r.id for r in fwd.store.held_messages() if r.msg_id == msg_id)


def test_list_show_approve_reject(fwd, upstream):
    approve_id = _hold(fwd, "审核通过的短信 r1", 5001)
    reject_id = _hold(fwd, "审核拒绝的短信 r1", 5002)
    time.sleep(0.3)  # the forwarder leaves held rows alone
    assert fwd.stats([5001, 5002]) == []

    listed = _review(fwd, "list")
    assert listed.returncode == 0
    assert f"{approve_id:>6}" in listed.stdout and "审核通过的短信 r1" in listed.stdout
    shown = _review(fwd, "show", str(reject_id))
    assert "审核拒绝的短信 r1" in shown.stdout and "5002" in shown.stdout

    assert _review(fwd, "approve", str(approve_id)).returncode == 0
    assert _review(fwd, "reject", str(reject_id)).returncode == 0
    assert fwd.wait_stats([5001]) == ["DELIVRD"]
    assert fwd.wait_stats([5002]) == ["MA:0006"]

    again = _review(fwd, "approve", str(approve_id))
    assert again.returncode == 1 and "not held" in again.stdout
    assert _review(fwd, "reject", str(approve_id)).returncode == 1
    time.sleep(0.3)
    assert len([s for s in upstream.submits() if "审核通过的短信 r1" in s["text"]]) == 1
    assert not [s for s in upstream.submits() if "审核拒绝的短信 r1" in s["text"]]
    assert sorted(fwd.stats([5001, 5002])) == ["DELIVRD", "MA:0006"]  # one report each
    assert "no messages held" in _review(fwd, "list").stdout
