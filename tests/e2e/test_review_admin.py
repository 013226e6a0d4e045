"""The manual-audit queue through AdminService (ListHeld / ReviewHeld) of a real daemon.

The held rows are written as the front-end writes them (GatewayStore.accept_message with action
"hold") into the daemon's data folder, where `smspolicy up` keeps the gateway store.
"""
import sqlite3
import time

import grpc
import pytest

from gateway.store import GatewayStore, Message, Recipient
from policy.api.v1 import policy_pb2 as pb
from tests.support.procs import DaemonProc


@pytest.fixture
def daemon_with_queue(tmp_path):
    d = DaemonProc(tmp_path)
    store = GatewayStore(str(d.data_dir / "gateway.db"))
    for i, dest in enumerate(("13800138101", "13800138102")):
        msg = Message(request_id=f"g1:{100 + i}", decision_id=f"dec{i}", account_id="900008",
                      src_id="106900008", service_id="", msg_fmt=8,
                      content="【云信科技】待审核".encode("utf-16-be"), registered_delivery=True,
                      submit_time=time.time())
        store.accept_message(msg, [Recipient(dest, (100 + i,), "hold", "ch-cmcc")])
    store.close()
    yield d
    d.stop()


def test_list_approve_and_reject_held_messages(daemon_with_queue):
    d = daemon_with_queue
    held = d.admin.ListHeld(pb.ListHeldRequest(), timeout=5).messages
    assert [(m.destination, m.content, m.account_id) for m in held] == [
        ("13800138101", "【云信科技】待审核", "900008"), ("13800138102", "【云信科技】待审核", "900008")]
    approve, reject = held[0].id, held[1].id
    done = d.admin.ReviewHeld(pb.ReviewHeldRequest(ids=[approve], review=pb.REVIEW_APPROVE), timeout=5)
    assert list(done.done) == [approve]
    again = d.admin.ReviewHeld(pb.ReviewHeldRequest(ids=[approve], review=pb.REVIEW_APPROVE), timeout=5)
    assert list(again.not_held) == [approve]  # approved once: forwarded once
    d.admin.ReviewHeld(pb.ReviewHeldRequest(ids=[reject], review=pb.REVIEW_REJECT), timeout=5)
    assert not d.admin.ListHeld(pb.ListHeldRequest(), timeout=5).messages
    with sqlite3.connect(d.data_dir / "gateway.db") as db:
        states = dict(db.execute("SELECT id, state FROM outbox"))
        stats = [r[0] for r in db.execute("SELECT stat FROM reports WHERE msg_id = '101'")]
    assert states[approve] == "pending" and stats == ["MA:0006"]


def test_review_needs_a_decision(daemon_with_queue):
    with pytest.raises(grpc.RpcError) as e:
        daemon_with_queue.admin.ReviewHeld(pb.ReviewHeldRequest(ids=[1]), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
