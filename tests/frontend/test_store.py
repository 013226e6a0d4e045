"""GatewayStore: the transactions the no-loss promise rests on, with two processes' handles."""
import os
import sqlite3
import time

import pytest

from gateway.store import GatewayStore, Message, NewReport, Part, Recipient

BIG = (1 << 64) - 5   # Msg_Ids use all 64 bits; SQLite integers are signed


@pytest.fixture
def store(tmp_path):
    s = GatewayStore(tmp_path / "gateway.db")
    yield s
    s.close()


def message(rd=True, request_id="g1:1", account="900001"):
    return Message(request_id, "dec-1", account, "106900001", "svc", 8, "【云信科技】hi".encode("utf-16-be"),
                   rd, 1000.0)


def rows(store, sql, *args):
    return store._db.execute(sql, args).fetchall()


def test_accept_message_splits_recipients_into_outbox_held_and_reports(store):
    due = store.accept_message(message(), [
        Recipient("13800138000", (BIG,), "accept", "ch-cmcc", 1),
        Recipient("13800138001", (BIG + 1,), "hold", "ch-cmcc", 1),
        Recipient("13900000001", (BIG + 2,), "reject", stat="MA:0001"),
    ])
    assert due == 1
    assert rows(store, "SELECT dest, state, channel_id FROM outbox ORDER BY id") == [
        ("13800138000", "pending", "ch-cmcc"), ("13800138001", "held", "ch-cmcc")]
    [report] = store.pending_reports("900001", now=2000.0, limit=10, max_attempts=3)
    assert (report.msg_id, report.dest, report.stat) == (BIG + 2, "13900000001", "MA:0001")
    [claimed] = store.claim_outbox("ch-cmcc", 10)
    assert claimed.msg_id == BIG and claimed.msg_ids == (BIG,)


def test_reports_nobody_asked_for_are_stored_as_acknowledged(store):
    due = store.accept_message(message(rd=False), [Recipient("13900000001", (7,), "reject", stat="MA:0001")])
    assert due == 0
    assert store.pending_reports("900001", 2000.0, 10, 3) == []
    assert rows(store, "SELECT state FROM reports") == [("acked",)]


def test_accept_message_is_one_transaction(store):
    store.buffer_part(part(seq=1))
    with pytest.raises(sqlite3.Error):
        # the report row cannot be bound: the outbox insert before it must be rolled back too
        store.accept_message(message(), [Recipient("13800138000", (1,), "accept", "ch-cmcc"),
                                         Recipient("13900000001", (2,), "reject", stat=object())],
                             parts_key="k")
    assert rows(store, "SELECT count(*) FROM outbox") == [(0,)]
    assert len(store.buffered_parts()) == 1


def test_accepting_a_reassembled_message_drops_its_parts(store):
    store.buffer_part(part(seq=1))
    store.buffer_part(part(seq=2, key="other"))
    store.accept_message(message(), [Recipient("13800138000", (1, 2, 3), "accept", "ch-cmcc", 3)],
                         parts_key="k")
    assert [p.key for p in store.buffered_parts()] == ["other"]


def part(seq=1, key="k", received=100.0):
    return Part(key, "900001", "106900001", ("13800138000", "13900000001"), 7, 3, seq,
                (BIG + seq * 10, BIG + seq * 10 + 1), b"\x00a", 8, True, "svc", "01", "0", received)


def test_buffered_parts_round_trip(store):
    store.buffer_part(part(seq=2))
    assert store.buffered_parts() == [part(seq=2)]


def test_report_is_resent_until_acknowledged_then_waits_for_next_login(store):
    store.add_reports([NewReport("900001", BIG, "13800138000", "MA:0026", 1.0, 2.0, True, "106900001", "")])
    [r] = store.pending_reports("900001", 10.0, 10, max_attempts=2)
    store.mark_report_sent(r.id, 555, next_attempt=20.0)
    assert store.pending_reports("900001", 19.0, 10, 2) == []          # not due yet
    [again] = store.pending_reports("900001", 20.0, 10, 2)
    assert again.deliver_msg_id == 555 and again.attempts == 1         # resent with the same id
    store.mark_report_sent(again.id, 555, next_attempt=30.0)
    assert store.pending_reports("900001", 99.0, 10, 2) == []          # N sends used up
    store.rearm("900001", 2)                                            # the customer logs in
    [rearmed] = store.pending_reports("900001", 99.0, 10, 2)
    assert rearmed.id == r.id
    assert not store.ack_report("900002", 555)                          # not that account's
    assert store.ack_report("900001", 555)
    assert store.pending_reports("900001", 99.0, 10, 2) == []
    assert not store.ack_report("900001", 555)


def test_a_login_leaves_reports_within_their_sends_to_their_timer(store):
    """rearm makes due again only what used up its N sends: a report sent once, waiting for
    its DELIVER_RESP on another connection of the account, keeps its resend time."""
    store.add_reports([NewReport("900001", BIG, "13800138000", "MA:0001", 1.0, 2.0, True,
                                 "106900001", ""),
                       NewReport("900001", BIG + 1, "13800138000", "MA:0001", 1.0, 2.0, True,
                                 "106900001", "")])
    first, second = store.pending_reports("900001", 10.0, 10, max_attempts=2)
    store.mark_reports_sent([(first.id, 555), (second.id, 556)], next_attempt=40.0)
    store.mark_report_sent(second.id, 556, next_attempt=50.0)          # second: N sends used up
    store.rearm("900001", 2)                                            # another connection
    [rearmed] = store.pending_reports("900001", 11.0, 10, 2)
    assert rearmed.id == second.id and rearmed.attempts == 0
    assert [r.id for r in store.pending_reports("900001", 40.0, 10, 2)] == [first.id, second.id]


def test_acknowledgements_of_one_turn_are_recorded_together(store):
    """ack_deliveries: reports and MO of one account in one call; unknown ids, another
    account's and already acknowledged ones are skipped."""
    store.add_reports([NewReport("900001", BIG - i, "13800138000", "DELIVRD", 1.0, 2.0, True,
                                 "106900001", "") for i in range(3)])
    store.add_reports([NewReport("900002", 42, "13800138000", "DELIVRD", 1.0, 2.0, True,
                                 "106900001", "")])
    mine = store.pending_reports("900001", 10.0, 10, 3)
    store.mark_reports_sent([(r.id, 600 + i) for i, r in enumerate(mine)], next_attempt=20.0)
    [theirs] = store.pending_reports("900002", 10.0, 10, 3)
    store.mark_reports_sent([(theirs.id, 700)], next_attempt=20.0)
    store.add_mo("900001", "10690000188", "13912345678", b"x", 0)
    [mo] = store.pending_mo("900001", 10.0, 10, 3)
    store.mark_mo_sent([(mo.id, 800)], next_attempt=20.0)
    assert store.ack_deliveries("900001", [600, 601, 700, 800, 999]) == 3
    assert store.ack_deliveries("900001", [600, 602]) == 1              # 600 was already
    assert store.pending_reports("900001", 99.0, 10, 3) == []
    assert store.pending_mo("900001", 99.0, 10, 3) == []
    assert [r.id for r in store.pending_reports("900002", 99.0, 10, 3)] == [theirs.id]


def test_data_version_tells_commits_of_another_connection(store, tmp_path):
    other = GatewayStore(store.path)
    try:
        seen = store.data_version()
        store.add_mo("900001", "10690000188", "13912345678", b"x", 0)      # its own commit
        assert store.data_version() == seen
        other.add_mo("900001", "10690000188", "13912345678", b"y", 0)      # the forwarder's
        assert store.data_version() != seen
    finally:
        other.close()


def test_forwarder_finish_reports_every_part_once(store):
    store.accept_message(message(), [Recipient("13800138000", (BIG - 2, BIG - 1, BIG), "accept", "ch-cmcc", 3)])
    [row] = store.claim_outbox("ch-cmcc", 10)
    assert row.state == "sending" and row.attempts == 1
    store.mark_sent(row.id, 987654321)
    assert store.outbox_by_upstream("ch-cmcc", 987654321).id == row.id
    assert store.finish(row.id, "DELIVRD", done_time=5000.0)
    assert not store.finish(row.id, "DELIVRD")                          # duplicate upstream report
    reports = store.pending_reports("900001", 6000.0, 10, 3)
    assert [(r.msg_id, r.stat, r.done_time) for r in reports] == [
        (BIG - 2, "DELIVRD", 5000.0), (BIG - 1, "DELIVRD", 5000.0), (BIG, "DELIVRD", 5000.0)]


def test_two_processes_never_claim_the_same_row(tmp_path):
    a, b = GatewayStore(tmp_path / "g.db"), GatewayStore(tmp_path / "g.db")
    a.accept_message(message(), [Recipient(f"1380013800{i}", (i,), "accept", "ch-cmcc") for i in range(10)])
    got_a, got_b = a.claim_outbox("ch-cmcc", 4), b.claim_outbox("ch-cmcc", 100)
    assert len(got_a) == 4 and len(got_b) == 6
    assert not {r.id for r in got_a} & {r.id for r in got_b}
    a.close(), b.close()


def test_requeue_and_recovery_after_a_forwarder_crash(store):
    store.accept_message(message(), [Recipient("13800138000", (1,), "accept", "ch-cmcc"),
                                     Recipient("13800138001", (2,), "accept", "ch-cmcc")])
    first, second = store.claim_outbox("ch-cmcc", 10)
    store.mark_sent(first.id, 11)
    store.requeue(first.id)
    assert store.requeue_claimed() == 1                                 # `second` was left sending
    again = store.claim_outbox("ch-cmcc", 10)
    assert {r.id for r in again} == {first.id, second.id}
    assert all(r.upstream_msg_id is None for r in again)


def test_held_messages_are_approved_or_rejected_with_ma0006(store):
    store.accept_message(message(), [Recipient("13800138000", (1,), "hold", "ch-cmcc"),
                                     Recipient("13800138001", (2,), "hold", "ch-cmcc")])
    one, two = store.held_messages()
    assert store.claim_outbox("ch-cmcc", 10) == []
    assert store.approve(one.id) and not store.approve(one.id)
    assert [r.id for r in store.claim_outbox("ch-cmcc", 10)] == [one.id]
    assert store.reject_held(two.id) and not store.reject_held(two.id)
    [report] = store.pending_reports("900001", 1e12, 10, 3)
    assert (report.msg_id, report.stat) == (2, "MA:0006")
    assert store.held_messages() == []


def test_cancel_only_what_was_not_handed_over(store):
    store.accept_message(message(), [Recipient("13800138000", (1,), "accept", "ch-cmcc"),
                                     Recipient("13800138001", (2,), "accept", "ch-cmcc")])
    assert not store.cancel("900002", 1)
    assert store.cancel("900001", 1) and not store.cancel("900001", 1)
    [row] = store.claim_outbox("ch-cmcc", 10)
    assert row.msg_id == 2 and not store.cancel("900001", 2)


def test_mo_delivery_cycle(store):
    mo_id = store.add_mo("900001", "10690000188", "13800138000", b"\x00T", 8)
    [mo] = store.pending_mo("900001", 1e12, 10, 3)
    assert (mo.id, mo.dest_id, mo.content) == (mo_id, "10690000188", b"\x00T")
    store.mark_mo_sent([(mo.id, BIG)], next_attempt=1e13)
    assert store.pending_mo("900001", 1e12, 10, 3) == []
    assert store.ack_mo("900001", BIG)


def test_query_counts(store):
    store.accept_message(message(), [Recipient("13800138000", (1,), "accept", "ch-cmcc"),
                                     Recipient("13900000001", (2,), "reject", stat="MA:0001")])
    [row] = store.claim_outbox("ch-cmcc", 1)
    store.finish(row.id, "DELIVRD")
    counts = store.query_counts("900001", 0.0, 1e12)
    assert (counts["mt_tlmsg"], counts["mt_tlusr"], counts["mt_scs"], counts["mt_wt"],
            counts["mt_fl"]) == (2, 2, 1, 0, 1)
    assert store.query_counts("900001", 2000.0, 1e12)["mt_tlmsg"] == 0


def test_query_counts_of_one_service(store):
    """Query_Type 1: only the messages (and MO) of the Service_Id in Query_Code."""
    other = Message("g1:9", "dec-9", "900001", "106900001", "svc2", 8, b"\x00a", True, 1000.0)
    store.accept_message(message(), [Recipient("13800138000", (1,), "accept", "ch-cmcc")])
    store.accept_message(other, [Recipient("13800138001", (2,), "accept", "ch-cmcc"),
                                 Recipient("13900000001", (3,), "reject", stat="MA:0001")])
    store.add_mo("900001", "106900001", "13800138000", b"\x00T", 8, service_id="svc2",
                 received=1000.0)
    assert store.query_counts("900001", 0.0, 1e12)["mt_tlmsg"] == 3
    svc = store.query_counts("900001", 0.0, 1e12, "svc")
    assert (svc["mt_tlmsg"], svc["mt_tlusr"], svc["mt_wt"], svc["mt_fl"], svc["mo_wt"]) == (
        1, 1, 1, 0, 0)
    svc2 = store.query_counts("900001", 0.0, 1e12, "svc2")
    assert (svc2["mt_tlmsg"], svc2["mt_tlusr"], svc2["mt_wt"], svc2["mt_fl"], svc2["mo_wt"]) == (
        2, 2, 1, 1, 1)
    assert set(store.query_counts("900001", 0.0, 1e12, "nosuch").values()) == {0}


def test_reports_that_cannot_be_encoded_are_failed_not_pending(store):
    store.add_reports([NewReport("900001", BIG, "13800138000", "MA:0001", 1.0, 2.0, True,
                                 "106900001", "")])
    mo_id = store.add_mo("900001", "10690000188", "13800138000", b"\x00T", 8)
    [r] = store.pending_reports("900001", 10.0, 10, 3)
    store.fail_reports([r.id])
    store.fail_mo([mo_id])
    store.rearm("900001", 0)
    assert store.pending_reports("900001", 10.0, 10, 3) == []
    assert store.pending_mo("900001", 1e12, 10, 3) == []
    assert rows(store, "SELECT state FROM reports") == [("failed",)]
    assert store.query_counts("900001", 0.0, 1e12)["mo_fl"] == 1


def test_background_checkpoints_keep_the_wal_bounded(tmp_path):
    """A connection that never checkpoints in its commits (the front-end's) relies on the
    Checkpointer thread: the WAL is folded back and reused instead of growing with every
    commit. 3 MB written in 30 commits leave a WAL far smaller than that."""
    from gateway.sqlitedb import Checkpointer, open_shared, transaction
    path = str(tmp_path / "wal.db")
    db = open_shared(path, "CREATE TABLE IF NOT EXISTS t (b BLOB);", autocheckpoint=False)
    checkpointer = Checkpointer(path, every=0.05)
    try:
        for _ in range(30):
            with transaction(db) as tx:
                tx.execute("INSERT INTO t VALUES (?)", (os.urandom(100_000),))
            time.sleep(0.1)
        wal = os.path.getsize(path + "-wal")
    finally:
        checkpointer.close()
        db.close()
    assert wal < 1_000_000, wal
