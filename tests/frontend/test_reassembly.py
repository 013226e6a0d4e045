"""Reassembler on a real store: order, duplicates, timeouts, and surviving a restart."""
import pytest

from gateway.frontend.reassembly import Offer, Reassembler, message_key, part_reports
from gateway.store import GatewayStore, Part

DESTS = ("13800138000", "13800138001")


@pytest.fixture
def store(tmp_path):
    s = GatewayStore(tmp_path / "gateway.db")
    yield s
    s.close()


def part(seq, total=3, ref=9, received=100.0, msg_fmt=8, dests=DESTS):
    key = message_key("900001", "106900001", dests, ref, total)
    return Part(key, "900001", "106900001", dests, ref, total, seq, (seq * 100, seq * 100 + 1),
                f"<{seq}>".encode(), msg_fmt, True, "", "", "", received)


def test_parts_in_any_order_complete_once_in_order(store):
    r = Reassembler(store, timeout=180)
    assert r.offer(part(3))[0] is Offer.BUFFERED
    assert r.offer(part(1))[0] is Offer.BUFFERED
    assert len(store.buffered_parts()) == 2
    offer, parts = r.offer(part(2))
    assert offer is Offer.COMPLETE
    assert [p.seq for p in parts] == [1, 2, 3]
    assert len(store.buffered_parts()) == 2     # the completing part is never buffered


def test_duplicate_inconsistent_and_late_parts_are_refused(store):
    r = Reassembler(store, timeout=180)
    r.offer(part(1))
    assert r.offer(part(1))[0] is Offer.REFUSED
    assert r.offer(part(2, msg_fmt=15))[0] is Offer.REFUSED
    offer, _ = r.offer(part(3, total=3))
    assert offer is Offer.BUFFERED
    offer, parts = r.offer(part(2))
    assert offer is Offer.COMPLETE
    assert r.offer(part(2))[0] is Offer.REFUSED   # while it is being evaluated
    r.settle(parts[0].key, now=200.0)
    assert r.offer(part(3))[0] is Offer.REFUSED   # a late copy of a finished message
    r.expired(now=200.0 + 181)
    assert r.offer(part(3))[0] is Offer.BUFFERED  # long after: a new message


def test_a_failed_evaluation_waits_for_the_completing_part_again(store):
    r = Reassembler(store, timeout=180)
    r.offer(part(1)), r.offer(part(2))
    offer, parts = r.offer(part(3))
    assert offer is Offer.COMPLETE
    r.reopen(parts[0].key)
    assert r.offer(part(3))[0] is Offer.COMPLETE


def test_timeout_counts_from_the_last_part(store):
    r = Reassembler(store, timeout=180)
    r.offer(part(1, received=100.0))
    r.offer(part(2, received=250.0))
    assert r.expired(now=300.0) == []
    [(key, parts)] = r.expired(now=431.0)
    assert [p.seq for p in parts] == [1, 2]
    reports = part_reports(parts, "MA:0026", 431.0)
    assert sorted((x.msg_id, x.dest) for x in reports) == [
        (100, DESTS[0]), (101, DESTS[1]), (200, DESTS[0]), (201, DESTS[1])]


def test_messages_are_keyed_by_source_destinations_reference_and_total(store):
    r = Reassembler(store, timeout=180)
    r.offer(part(1))
    for other in (part(2, ref=10), part(2, total=4), part(2, dests=DESTS[:1])):
        assert r.offer(other)[0] is Offer.BUFFERED
    assert len(r) == 4


def test_buffered_parts_survive_a_restart(tmp_path):
    first = GatewayStore(tmp_path / "g.db")
    r = Reassembler(first, timeout=180)
    r.offer(part(1, received=100.0)), r.offer(part(3, received=150.0))
    first.close()
    second = GatewayStore(tmp_path / "g.db")
    r2 = Reassembler(second, timeout=180)
    assert r2.load() == 2
    assert r2.offer(part(1))[0] is Offer.REFUSED
    assert r2.expired(now=320.0) == []           # the stored arrival times count
    offer, parts = r2.offer(part(2))
    assert offer is Offer.COMPLETE and [p.payload for p in parts] == [b"<1>", b"<2>", b"<3>"]
    second.close()
