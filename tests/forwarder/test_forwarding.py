"""Outbox -> real forwarder process -> real simulator process -> reports back in the store."""
from __future__ import annotations

import time

import pytest


def _upstream_copies(upstream, marker: str) -> list[dict]:
    return [s for s in upstream.submits() if marker in s["text"]]


def test_delivered_and_undelivered_reports_come_back_with_the_upstreams_stat(fwd, upstream):
    ok = fwd.put("ch-a", "hello #fault:stat=DELIVRD t1")
    bad = fwd.put("ch-a", "hello #fault:stat=UNDELIV t1")
    assert fwd.wait_stats(ok) == ["DELIVRD"]
    assert fwd.wait_stats(bad) == ["UNDELIV"]
    [copy] = _upstream_copies(upstream, "DELIVRD t1")
    assert copy["dests"] == ["13800138000"] and copy["registered_delivery"] == 1
    assert copy["account"] == "SIM001"


def test_2x_channel_and_other_final_states(fwd):
    ids = fwd.put("ch-b", "expired #fault:stat=EXPIRED t2")
    assert fwd.wait_stats(ids) == ["EXPIRED"]


@pytest.mark.parametrize("marker,stat", [("#fault:result=13", "MO:0013"),
                                         ("#fault:result=8", "MO:0008"),
                                         ("#fault:noresp", "MO:0254"),
                                         ("#fault:drop", "MO:0255")])
def test_upstream_failures_become_mo_codes(fwd, marker, stat):
    ids = fwd.put("ch-a", f"fail {marker} t3")
    assert fwd.wait_stats(ids, timeout=5) == [stat]


def test_link_comes_back_after_a_drop(fwd, upstream):
    before = upstream.control("stats")["logins"]
    ids = fwd.put("ch-a", "#fault:drop t4")
    assert fwd.wait_stats(ids) == ["MO:0255"]
    after = fwd.put("ch-a", "after the drop t4")
    assert fwd.wait_stats(after) == ["DELIVRD"]
    assert upstream.control("stats")["logins"] > before


def test_long_message_is_resplit_into_67_character_parts(fwd, upstream):
    before = len(upstream.submits())
    text = "".join(chr(0x4E00 + i) for i in range(150)) + " t5"
    ids = fwd.put("ch-a", text, parts=3)
    assert fwd.wait_stats(ids) == ["DELIVRD"] * 3  # one report per part the customer sent
    copies = upstream.submits(before)
    assert [len(c["text"]) for c in copies] == [67, 67, 19]
    assert "".join(c["text"] for c in copies) == text
    assert [c["concat"][1:] for c in copies] == [[3, 1], [3, 2], [3, 3]]
    assert len({c["concat"][0] for c in copies}) == 1
    assert [(c["pk_total"], c["pk_number"]) for c in copies] == [(3, 1), (3, 2), (3, 3)]


def test_a_long_message_fails_as_a_whole_when_one_part_fails(fwd):
    text = "x" * 67 + "#fault:stat=UNDELIV" + "y" * 70
    ids = fwd.put("ch-a", text, parts=2)
    assert fwd.wait_stats(ids) == ["UNDELIV", "UNDELIV"]


def test_long_message_to_a_channel_without_long_sms_gets_mo_200(fwd, upstream):
    before = len(upstream.submits())
    ids = fwd.put("ch-b", "z" * 71 + " t6")
    assert fwd.wait_stats(ids) == ["MO:200"]
    assert not any("t6" in s["text"] for s in upstream.submits(before))


def test_http_channel_success_and_failures(fwd):
    ok = fwd.put("ch-h", "via http #fault:stat=DELIVRD")
    refused = fwd.put("ch-h", "via http #fault:result=21")
    dead = fwd.put("ch-dead", "nobody listens")
    assert fwd.wait_stats(ok) == ["DELIVRD"]
    assert fwd.wait_stats(refused) == ["MO:201"]
    assert fwd.wait_stats(dead) == ["MO:201"]


def test_mo_goes_to_the_account_owning_the_longest_access_code_prefix(fwd, upstream):
    upstream.control("mo SIM001 13900139000 10690000123 TD to two")
    upstream.control("mo SIM002 13900139001 1069000019 TD to one")
    upstream.control("mo SIM002 13900139002 999 nobody")
    rows = upstream.wait(lambda: len(fwd.mo_rows()) >= 2 and fwd.mo_rows(), what="MO rows")
    time.sleep(0.3)
    got = {(a, d, s, c.decode("utf-16-be")) for a, d, s, c, _ in fwd.mo_rows()}
    assert got == {("900002", "10690000123", "13900139000", "TD to two"),
                   ("900001", "1069000019", "13900139001", "TD to one")}
    assert rows and upstream.control("stats")["pending"] == {}


def test_window_and_rate_are_respected(fwd, upstream):
    before = len(upstream.submits())
    ids = [fwd.put("ch-w", f"slow #fault:delay=0.3 w{i}") for i in range(9)]
    for one in ids:
        assert fwd.wait_stats(one) == ["DELIVRD"]
    assert upstream.control("stats")["max_in_flight"]["SIM003"] == 3
    times = sorted(s["received"] for s in upstream.submits(before) if s["account"] == "SIM003")
    assert len(times) == 9
    assert times[-1] - times[0] >= 8 / 20 - 0.02  # rate 20/s: evenly spaced


def test_idle_links_are_kept_alive(fwd, upstream):
    logins = upstream.control("stats")["logins"]
    tests = upstream.control("stats")["active_tests"]
    time.sleep(1.2)
    stats = upstream.control("stats")
    assert stats["active_tests"] >= tests + 3
    assert stats["logins"] == logins


def test_a_field_the_upstream_version_cannot_carry_is_refused_not_fatal(fwd):
    too_long = "8" * 25  # fits a 3.0 number field (32), not a 2.x one (21)
    ids = fwd.put("ch-b", "wide number t7", dest=too_long)
    assert fwd.wait_stats(ids) == ["MA:0009"]
    after = fwd.put("ch-b", "the channel still works t7")
    assert fwd.wait_stats(after) == ["DELIVRD"]
