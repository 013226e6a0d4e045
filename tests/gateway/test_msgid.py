import sys
import threading
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cmpp import MsgIdGenerator, pack_msg_id, unpack_msg_id


@pytest.mark.parametrize("value,fields", [
    # cmpp.md §10: values from gocmpp's submit/deliver tests and SMSGate's TestMsgId
    (0xB2B9DA8000010000, (11, 5, 14, 29, 42, 1, 0)),
    (0xB4C5530000010000, (11, 9, 17, 21, 12, 1, 0)),
    (0x9BD88980F32D1C3E, (9, 23, 22, 8, 38, 62253, 7230)),
])
def test_known_ids(value, fields):
    assert unpack_msg_id(value) == fields
    month, day, hour, minute, second, gateway_code, seq = fields
    assert pack_msg_id(datetime(2015, month, day, hour, minute, second), gateway_code, seq) == value


@settings(max_examples=200, deadline=None)
@given(dt=st.datetimes(), gateway_code=st.integers(0, 2 ** 22 - 1), seq=st.integers(0, 0xFFFF))
def test_round_trip(dt, gateway_code, seq):
    fields = unpack_msg_id(pack_msg_id(dt, gateway_code, seq))
    assert fields == (dt.month, dt.day, dt.hour, dt.minute, dt.second, gateway_code, seq)
    assert fields.gateway_code == gateway_code and fields.seq == seq


@pytest.mark.parametrize("gateway_code,seq", [(2 ** 22, 0), (-1, 0), (0, 0x10000), (0, -1)])
def test_pack_rejects_values_that_do_not_fit(gateway_code, seq):
    with pytest.raises(ValueError):
        pack_msg_id(datetime(2024, 1, 1), gateway_code, seq)


@pytest.mark.parametrize("value", [-1, 2 ** 64])
def test_unpack_rejects_non_64_bit_values(value):
    with pytest.raises(ValueError):
        unpack_msg_id(value)


class FrozenClock:
    """A wall clock that does not move unless told to (every id lands in the same second)."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


NOW = datetime(2024, 12, 31, 23, 59, 58, 500_000)


def test_200000_ids_are_unique_and_borrow_later_seconds():
    generator = MsgIdGenerator(1001, clock=FrozenClock(NOW))
    ids = [generator.next() for _ in range(200_000)]
    assert len(set(ids)) == len(ids)
    seconds = {unpack_msg_id(i)[:5] for i in ids}
    # 200000 ids need four seconds of 65536: 23:59:58 and 59, then New Year's 00:00:00 and 01
    assert seconds == {(12, 31, 23, 59, 58), (12, 31, 23, 59, 59), (1, 1, 0, 0, 0), (1, 1, 0, 0, 1)}
    assert {unpack_msg_id(i).gateway_code for i in ids} == {1001}


def test_ids_unique_with_the_real_clock():
    generator = MsgIdGenerator(7)
    ids = [generator.next() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)


@pytest.fixture
def eager_thread_switching():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # make unsynchronised read-modify-write races show up
    yield
    sys.setswitchinterval(interval)


def test_ids_unique_across_threads(eager_thread_switching):
    generator = MsgIdGenerator(5, clock=FrozenClock(NOW))
    results: list[list[int]] = [[] for _ in range(4)]

    def work(out: list[int]) -> None:
        for _ in range(25_000):
            out.append(generator.next())
        out.extend(generator.next_block(37))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for out in results for i in out]
    assert len(ids) == 4 * (25_000 + 37)
    assert len(set(ids)) == len(ids)


def test_block_is_consecutive_and_never_wraps_the_sequence():
    generator = MsgIdGenerator(3, clock=FrozenClock(NOW))
    seen: set[int] = set()
    for _ in range(700):  # 70000 ids: crosses the 65536 ids of one second
        block = generator.next_block(100)
        first, last = unpack_msg_id(block[0]), unpack_msg_id(block[-1])
        assert len(block) == 100 and block[-1] - block[0] == 99
        assert first[:6] == last[:6] and last.seq == first.seq + 99
        assert seen.isdisjoint(block)
        seen.update(block)
    # 655 blocks fit in the first second (65500 ids); the 656th starts the next second at 0
    assert unpack_msg_id(generator.next_block(1)[0])[4:] == (59, 3, 4500)


def test_a_clock_stepping_back_does_not_repeat_ids():
    clock = FrozenClock(NOW)
    generator = MsgIdGenerator(9, clock=clock)
    before = [generator.next() for _ in range(10)]
    clock.now = NOW - timedelta(minutes=5)
    after = [generator.next() for _ in range(10)]
    assert len(set(before + after)) == 20
    assert unpack_msg_id(after[0])[:5] == (12, 31, 23, 59, 58)


def test_a_new_second_restarts_the_sequence():
    clock = FrozenClock(NOW)
    generator = MsgIdGenerator(9, clock=clock)
    generator.next_block(10)
    clock.now = NOW + timedelta(seconds=1)
    assert unpack_msg_id(generator.next())[4:] == (59, 9, 0)


@pytest.mark.parametrize("n", [0, -1, 65537])
def test_block_size_must_fit_one_second(n):
    with pytest.raises(ValueError):
        MsgIdGenerator(1).next_block(n)


def test_gateway_code_must_fit_22_bits():
    with pytest.raises(ValueError):
        MsgIdGenerator(2 ** 22)


def test_a_restarted_generator_never_reuses_the_current_second():
    from datetime import datetime
    from gateway.cmpp.msgid import MsgIdGenerator, unpack_msg_id
    now = datetime(2026, 11, 26, 12, 0, 5, 300000)
    before = MsgIdGenerator(7, clock=lambda: now).next_block(3)
    after = MsgIdGenerator(7, clock=lambda: now, skip_current_second=True).next_block(3)
    assert not set(before) & set(after)
    assert unpack_msg_id(after[0]).second == 6


def test_an_aware_clock_gives_its_zones_time_and_may_change_zone():
    """The front-end's clock is platform time (datetime.now(zone)), whatever the host's zone;
    a change of zone moves the time fields to the new zone without repeating an id, even in
    a second borrowed before the change."""
    from zoneinfo import ZoneInfo
    utc = datetime(2026, 12, 8, 3, 20, 5, 300000, tzinfo=ZoneInfo("UTC"))
    zone = [ZoneInfo("Asia/Shanghai")]
    generator = MsgIdGenerator(7, clock=lambda: utc.astimezone(zone[0]), skip_current_second=True)
    first = generator.next()                                    # the borrowed second, 11:20:06
    assert unpack_msg_id(first)[:5] == (12, 8, 11, 20, 6)
    zone[0] = ZoneInfo("Asia/Tokyo")
    second = generator.next()                                   # same instant, in Tokyo
    assert unpack_msg_id(second)[:5] == (12, 8, 12, 20, 6) and second != first
    zone[0] = ZoneInfo("UTC")
    assert unpack_msg_id(generator.next())[:5] == (12, 8, 3, 20, 6)
