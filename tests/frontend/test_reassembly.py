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


def test_a_new_message_under_a_finished_key_is_not_a_duplicate(store):
    """Same account, source, recipients, reference and total as a message finished moments
    ago, but other parts: a new message. Only a repeat of a finished part (same number and
    payload) is refused."""
    def other(seq, **kw):
        p = part(seq, **kw)
        return Part(*[f"[{seq}]".encode() if f == "payload" else getattr(p, f)
                      for f in p.__dataclass_fields__])
    r = Reassembler(store, timeout=180)
    r.offer(part(1)), r.offer(part(2))
    offer, parts = r.offer(part(3))
    assert offer is Offer.COMPLETE
    r.settle(parts[0].key, now=200.0)
    for seq in (1, 2, 3):
        assert r.offer(part(seq))[0] is Offer.REFUSED            # late copies of the first
    assert r.offer(other(2))[0] is Offer.BUFFERED                # a second message begins
    assert r.offer(part(3, msg_fmt=15))[0] is Offer.REFUSED      # not one of its parts' formats
    assert r.offer(other(1))[0] is Offer.BUFFERED
    offer, parts = r.offer(other(3))
    assert offer is Offer.COMPLETE and [p.payload for p in parts] == [b"[1]", b"[2]", b"[3]"]
    r.settle(parts[0].key, now=210.0)
    assert r.offer(other(3))[0] is Offer.REFUSED                 # copies of either message
    assert r.offer(part(3))[0] is Offer.REFUSED
    r.expired(now=200.0 + 181)                                   # the first is forgotten
    assert r.offer(other(2))[0] is Offer.REFUSED
    assert r.offer(part(3))[0] is Offer.BUFFERED
    r.expired(now=210.0 + 181)
    assert r.offer(other(2))[0] is Offer.BUFFERED


def test_a_timed_out_message_remembers_the_parts_it_had(store):
    r = Reassembler(store, timeout=180)
    r.offer(part(1, received=100.0))
    [(key, _)] = r.expired(now=281.0)
    r.settle(key, now=281.0)
    assert r.offer(part(1, received=282.0))[0] is Offer.REFUSED
    assert r.offer(part(2, received=282.0))[0] is Offer.BUFFERED


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
