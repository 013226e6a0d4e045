"""Msg_Id: the 64-bit id an ISMG assigns to each message (cmpp.md §10).

Layout, most significant first: month 4 | day 5 | hour 5 | minute 6 | second 6 |
gateway code 22 | sequence 16.
"""

import threading
from datetime import datetime, timedelta
from typing import Callable, NamedTuple

_SEQ_SPACE = 1 << 16


class MsgIdFields(NamedTuple):
    month: int
    day: int
    hour: int
    minute: int
    second: int
    gateway_code: int
    seq: int


def _check_gateway_code(gateway_code: int) -> None:
    if not 0 <= gateway_code < 1 << 22:
        raise ValueError(f"gateway code {gateway_code} does not fit 22 bits")


def pack_msg_id(dt: datetime, gateway_code: int, seq: int) -> int:
    _check_gateway_code(gateway_code)
    if not 0 <= seq < _SEQ_SPACE:
        raise ValueError(f"sequence {seq} does not fit 16 bits")
    return (dt.month << 60 | dt.day << 55 | dt.hour << 50 | dt.minute << 44 | dt.second << 38
            | gateway_code << 16 | seq)


def unpack_msg_id(value: int) -> MsgIdFields:
    if not 0 <= value < 1 << 64:
        raise ValueError(f"Msg_Id {value} is not a 64-bit unsigned integer")
    return MsgIdFields(value >> 60, value >> 55 & 0x1F, value >> 50 & 0x1F, value >> 44 & 0x3F,
                       value >> 38 & 0x3F, value >> 16 & 0x3FFFFF, value & 0xFFFF)


class MsgIdGenerator:
    """Unique Msg_Ids for one gateway code, safe to share between threads.

    The id carries only the second, so at most 65536 ids exist per second. When they run out
    the generator borrows the next second instead of sleeping (it may run on an event loop);
    its time stamp never goes backwards, so a clock stepped back by NTP cannot repeat ids
    either. Caveat: ids borrowed ahead of the wall clock can repeat if the process restarts
    before the clock catches up, which takes sustained load above 65536 ids/s.

    The time fields are those of what `clock` returns: give it an aware clock
    (`lambda: datetime.now(zone)`) for the ids to carry that zone's time whatever the host's
    zone; its zone may change between calls (ids stay ordered by instant).
    """

    def __init__(self, gateway_code: int, clock: Callable[[], datetime] = datetime.now,
                 skip_current_second: bool = False):
        _check_gateway_code(gateway_code)
        self._gateway_code = gateway_code
        self._clock = clock
        self._lock = threading.Lock()
        self._second: datetime | None = None
        self._next_seq = 0
        if skip_current_second:
            # A process restarted within the second its predecessor last issued ids in would
            # start that second's sequence at 0 again and repeat them: start with it used up.
            self._second, self._next_seq = clock().replace(microsecond=0), _SEQ_SPACE

    def next(self) -> int:
        return self.next_block(1)[0]

    def next_block(self, n: int) -> range:
        """n consecutive ids for a SUBMIT to n recipients: SUBMIT_RESP carries the first, and
        recipient i is matched by first + i (S3 Appendix 1), so the block never wraps the
        sequence."""
        if not 1 <= n <= _SEQ_SPACE:
            raise ValueError(f"block of {n} ids; 1..{_SEQ_SPACE} fit in one second")
        with self._lock:
            now = self._clock().replace(microsecond=0)
            if self._second is None or now > self._second:
                self._second, self._next_seq = now, 0
            elif now.tzinfo is not None and self._second.tzinfo is not now.tzinfo:
                # an aware clock whose zone changed (the platform's was reloaded): the same
                # instant, with its fields in the new zone
                self._second = self._second.astimezone(now.tzinfo)
            if self._next_seq + n > _SEQ_SPACE:
                self._second += timedelta(seconds=1)
                self._next_seq = 0
            first = pack_msg_id(self._second, self._gateway_code, self._next_seq)
            self._next_seq += n
        return range(first, first + n)
