"""The forwarder's pure parts and its ledger SQL, in process."""
from __future__ import annotations

import time

import pytest

from gateway.cmpp import parse_udh
from gateway.forwarder.codes import upstream_result
from gateway.forwarder.ledger import Ledger, combine
from gateway.forwarder.service import mo_router
from gateway.forwarder.split import NotSplittable, upstream_parts
from gateway.store import GatewayStore, Message, Recipient
from policy.rules.model import Account, Platform, PolicySet


@pytest.mark.parametrize("result,stat", [(1, "MO:0001"), (13, "MO:0013"), (254, "MO:0254"),
                                         (9999, "MO:9999"), (70000, "MO:9999")])
def test_upstream_result_is_zero_padded_to_four_digits(result, stat):
    assert upstream_result(result) == stat and len(stat) == 7


def test_a_single_sms_goes_unchanged():
    [part] = upstream_parts("短信".encode("utf-16-be"), 8, b"", ref=1)
    assert part == ("短信".encode("utf-16-be"), 8, 0, 1, 1)
    ascii_ = b"a" * 159  # Msg_Fmt 0 may use 159 bytes
    assert upstream_parts(ascii_, 0, b"", 1)[0].content == ascii_


def test_long_texts_become_ucs2_parts_of_67_with_udh_whatever_the_format():
    text = "好" * 100 + "ab"
    for content, fmt in ((text.encode("utf-16-be"), 8), (text.encode("gb18030"), 15)):
        parts = upstream_parts(content, fmt, b"", ref=300)
        assert [(p.msg_fmt, p.tp_udhi, p.pk_total, p.pk_number) for p in parts] == \
            [(8, 1, 2, 1), (8, 1, 2, 2)]
        concat = [parse_udh(p.content) for p in parts]
        assert [(c.ref, c.total, c.seq) for c in concat] == [(300 & 0xFF, 2, 1), (300 & 0xFF, 2, 2)]
        assert [len(c.payload) // 2 for c in concat] == [67, 35]


def test_what_cannot_be_split_is_refused():
    with pytest.raises(NotSplittable):
        upstream_parts(b"\x00" * 150, 4, b"", 1)
    with pytest.raises(NotSplittable):
        upstream_parts(("长" * 70).encode("utf-16-be"), 8, b"\x06\x05\x04\x0b\x84\x23\xf0", 1)
    port_addressed = b"\x06\x05\x04\x0b\x84\x23\xf0"
    [part] = upstream_parts("短".encode("utf-16-be"), 8, port_addressed, 1)
    assert part.content.startswith(port_addressed) and part.tp_udhi == 1


def test_combined_stat_is_delivered_only_if_every_part_was():
    assert combine([(2, "DELIVRD", 5.0), (1, "DELIVRD", 3.0)]) == ("DELIVRD", 5.0)
    assert combine([(2, "EXPIRED", 5.0), (1, "DELIVRD", 3.0), (3, "UNDELIV", 4.0)]) == ("EXPIRED", 5.0)


def test_mo_router_prefers_the_longest_access_code():
    accounts = {a.id: a for a in (Account("1", "a", "s", access_code="1069"),
                                  Account("2", "b", "s", access_code="106901"),
                                  Account("3", "c", "s"))}
    owner = mo_router(PolicySet("v", Platform(), accounts, {}, {}, {}, {}, ()))
    assert [owner(d) for d in ("10690123", "1069020", "10701", "")] == ["2", "1", None, None]


def _sending_row(store: GatewayStore, parts: int = 1) -> int:
    msg = Message("r", "d", "900001", "1069", "", 8, b"\x00a", True, time.time())
    store.accept_message(msg, [Recipient("13800138000", tuple(range(10, 10 + parts)), "accept", "ch")])
    [row] = store.claim_outbox("ch", 1)
    return row.id


def test_reports_that_overtake_the_submit_resp_are_applied_when_it_is_recorded(tmp_path):
    store, ledger = GatewayStore(tmp_path / "g.db"), Ledger(str(tmp_path / "g.db"))
    row = _sending_row(store, parts=2)
    assert ledger.record_report("ch", 501, "DELIVRD", 1.0) is None  # orphan for now
    assert ledger.mark_sent("ch", row, [500, 501]) is None  # part 500 still owes its report
    final = ledger.record_report("ch", 500, "UNDELIV", 2.0)
    assert (final.outbox_id, final.stat, final.done_time) == (row, "UNDELIV", 2.0)
    assert store.finish(row, final.stat, final.done_time)
    assert ledger.record_report("ch", 500, "DELIVRD", 3.0) is not None  # a resent report...
    assert not store.finish(row, "DELIVRD")  # ...creates no second customer report


def test_mark_sent_does_not_revive_a_finished_row(tmp_path):
    store, ledger = GatewayStore(tmp_path / "g.db"), Ledger(str(tmp_path / "g.db"))
    row = _sending_row(store)
    store.finish(row, "MO:0254")
    assert ledger.mark_sent("ch", row, [7]) is None
    assert ledger.record_report("ch", 7, "DELIVRD", 1.0) is None  # unknown: an orphan


def test_complete_unfinished_and_expiry(tmp_path):
    store, ledger = GatewayStore(tmp_path / "g.db"), Ledger(str(tmp_path / "g.db"))
    done, waiting = _sending_row(store), _sending_row(store)
    ledger.mark_sent("ch", done, [1])
    ledger.mark_sent("ch", waiting, [2])
    ledger.record_report("ch", 1, "DELIVRD", 1.0)  # ... and the process died before finish
    [final] = ledger.complete_unfinished()
    assert (final.outbox_id, final.stat) == (done, "DELIVRD")
    assert ledger.expire(3600) == []
    assert sorted(ledger.expire(3600, now=time.time() + 7200)) == sorted([done, waiting])


def test_mo_is_stored_once_per_upstream_deliver(tmp_path):
    GatewayStore(tmp_path / "g.db")
    ledger = Ledger(str(tmp_path / "g.db"))
    args = ("ch", 99, "900001", "1069001", "13900139000", b"\x00T", 8, "", 0)
    assert ledger.add_mo(*args) is True
    assert ledger.add_mo(*args) is False


def test_a_scheduled_row_is_neither_pending_nor_claimed_before_its_time(tmp_path):
    store, ledger = GatewayStore(tmp_path / "g.db"), Ledger(str(tmp_path / "g.db"))
    later = Message("r1", "d", "900001", "1069", "", 8, b"\x00a", True, time.time(),
                    not_before=time.time() + 0.6)
    store.accept_message(later, [Recipient("13800138000", (1,), "accept", "ch")])
    assert not ledger.has_pending("ch") and store.claim_outbox("ch", 10) == []
    now = Message("r2", "d", "900001", "1069", "", 8, b"\x00a", True, time.time())
    store.accept_message(now, [Recipient("13800138001", (2,), "accept", "ch")])
    assert [r.msg_id for r in store.claim_outbox("ch", 10)] == [2]
    time.sleep(0.7)
    assert ledger.has_pending("ch")
    assert [r.msg_id for r in store.claim_outbox("ch", 10)] == [1]


def test_a_store_of_an_older_version_gets_the_not_before_column(tmp_path):
    """gateway.db files made before At_Time was kept have an outbox without `not_before`:
    opening the store adds it (rows there are due at once)."""
    import sqlite3
    from gateway import store as store_module
    old_schema = store_module._SCHEMA.replace(",\n    not_before REAL NOT NULL DEFAULT 0", "")
    assert "not_before" not in old_schema
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.executescript(old_schema)
        db.execute("INSERT INTO outbox (request_id, decision_id, account_id, msg_id, msg_ids, dest,"
                   " src_id, service_id, content, udh, msg_fmt, channel_id, segments,"
                   " registered_delivery, submit_time, state, updated) VALUES"
                   " ('r', 'd', '900001', '5', '5', '138', '1069', '', x'', x'', 8, 'ch', 1, 1,"
                   " 1.0, 'pending', 1.0)")
    store = GatewayStore(tmp_path / "g.db")
    assert Ledger(str(tmp_path / "g.db")).has_pending("ch")
    assert [r.msg_id for r in store.claim_outbox("ch", 10)] == [5]
    GatewayStore(tmp_path / "g.db").close()   # a second opening finds the column there
