"""Round trips, framing across TCP splits, and what bad input and bad values raise."""

import struct
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cmpp import (
    V20, V21, V30, ActiveTest, ActiveTestResp, Cancel, CancelResp, CmppDecodeError,
    CmppEncodeError, Connect, ConnectResp, Deliver, DeliverResp, Framer, Query, QueryResp,
    StatusReport, Submit, SubmitResp, Terminate, TerminateResp, decode, decode_connect,
    decode_report, encode, encode_report, is_v3, make_report_deliver, parse_report,
)
from gateway.cmpp import constants as c

VERSIONS = (V20, V21, V30)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)


def text(width: int):
    """An octet-string value: one character per byte, any byte but NUL (latin-1)."""
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=width)


def packet_strategies(version: int) -> dict[type, st.SearchStrategy]:
    v3 = is_v3(version)
    number = text(32 if v3 else 21)
    status = u32 if v3 else u8
    v3_only = u8 if v3 else st.just(0)
    link = text(20 if v3 else 8)
    return {
        Connect: st.builds(Connect, sequence_id=u32, source_addr=text(6),
                           authenticator_source=st.binary(min_size=16, max_size=16),
                           version=u8, timestamp=u32),
        ConnectResp: st.builds(ConnectResp, sequence_id=u32, status=status,
                               authenticator_ismg=st.binary(min_size=16, max_size=16), version=u8),
        Terminate: st.builds(Terminate, sequence_id=u32),
        TerminateResp: st.builds(TerminateResp, sequence_id=u32),
        Submit: st.builds(
            Submit, sequence_id=u32, msg_id=u64, pk_total=u8, pk_number=u8,
            registered_delivery=u8, msg_level=u8, service_id=text(10), fee_user_type=u8,
            fee_terminal_id=number, fee_terminal_type=v3_only, tp_pid=u8, tp_udhi=u8,
            msg_fmt=u8, msg_src=text(6), fee_type=text(2), fee_code=text(6),
            valid_time=text(17), at_time=text(17), src_id=text(21),
            dest_terminal_ids=st.lists(number, max_size=6).map(tuple),
            dest_terminal_type=v3_only, msg_content=st.binary(max_size=255), link_id=link),
        SubmitResp: st.builds(SubmitResp, sequence_id=u32, msg_id=u64, result=status),
        Deliver: st.builds(
            Deliver, sequence_id=u32, msg_id=u64, dest_id=text(21), service_id=text(10),
            tp_pid=u8, tp_udhi=u8, msg_fmt=u8, src_terminal_id=number,
            src_terminal_type=v3_only, registered_delivery=u8,
            msg_content=st.binary(max_size=255), link_id=link),
        DeliverResp: st.builds(DeliverResp, sequence_id=u32, msg_id=u64, result=status),
        ActiveTest: st.builds(ActiveTest, sequence_id=u32),
        ActiveTestResp: st.builds(ActiveTestResp, sequence_id=u32, reserved=u8),
        Query: st.builds(Query, sequence_id=u32, time=text(8), query_type=u8,
                         query_code=text(10), reserve=text(8)),
        QueryResp: st.builds(QueryResp, sequence_id=u32, time=text(8), query_type=u8,
                             query_code=text(10), mt_tlmsg=u32, mt_tlusr=u32, mt_scs=u32,
                             mt_wt=u32, mt_fl=u32, mo_scs=u32, mo_wt=u32, mo_fl=u32),
        Cancel: st.builds(Cancel, sequence_id=u32, msg_id=u64),
        CancelResp: st.builds(CancelResp, sequence_id=u32, success_id=status),
    }


PACKET_TYPES = list(packet_strategies(V30))
STRATEGIES = {v: packet_strategies(v) for v in VERSIONS}


def any_packet(version: int):
    return st.one_of(list(STRATEGIES[version].values()))


# ---- round trips --------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS, ids=hex)
@pytest.mark.parametrize("cls", PACKET_TYPES, ids=lambda cls: cls.__name__)
@FAST
@given(data=st.data())
def test_round_trip(cls, version, data):
    packet = data.draw(STRATEGIES[version][cls])
    frame = encode(packet, version)
    assert int.from_bytes(frame[:4], "big") == len(frame)
    assert decode(frame, version) == packet


def test_submit_lengths_follow_the_spec_formulas():
    for n in (0, 1, 99, 255):
        for length in (0, 140, 255):
            submit = Submit(sequence_id=1, dest_terminal_ids=("13800138000",) * n,
                            msg_content=bytes(length))
            assert len(encode(submit, V20)) == 138 + 21 * n + length
            assert len(encode(submit, V30)) == 163 + 32 * n + length
            assert decode(encode(submit, V30), V30) == submit


def test_version_widths_differ_where_the_checklist_says():
    sizes = {cls: (len(encode(cls(sequence_id=1), V20)), len(encode(cls(sequence_id=1), V30)))
             for cls in PACKET_TYPES}
    assert sizes == {
        Connect: (39, 39), ConnectResp: (30, 33), Terminate: (12, 12), TerminateResp: (12, 12),
        Submit: (138, 163), SubmitResp: (21, 24), Deliver: (85, 109), DeliverResp: (21, 24),
        ActiveTest: (12, 12), ActiveTestResp: (13, 13), Query: (39, 39), QueryResp: (63, 63),
        Cancel: (20, 20), CancelResp: (13, 16),
    }


def test_strings_are_cut_at_the_first_nul():
    frame = bytearray(encode(Submit(sequence_id=1, service_id="abc"), V30))
    frame[12 + 12 + 4] = 0x5A  # garbage after the NUL terminator of Service_Id ("abc\0Z...")
    assert decode(bytes(frame), V30).service_id == "abc"


def test_non_ascii_string_bytes_decode_without_error():
    frame = bytearray(encode(Submit(sequence_id=1, service_id="abc"), V30))
    frame[12 + 12 + 1] = 0xE4
    assert decode(bytes(frame), V30).service_id == "a\xe4c"


@pytest.mark.parametrize("version", VERSIONS, ids=hex)
@FAST
@given(service_id=st.binary(max_size=10).map(lambda b: b.replace(b"\0", b"\x01")),
       src_id=st.binary(max_size=21).map(lambda b: b.replace(b"\0", b"\x01")))
def test_octet_strings_of_any_bytes_encode_back_to_the_bytes_received(version, service_id,
                                                                       src_id):
    """A GBK Service_Id (or any other non-ASCII bytes) decodes to latin-1 characters; encoding
    what was decoded gives the same frame, and the fields go on to a DELIVER unchanged (the
    status report of such a SUBMIT must be deliverable)."""
    frame = bytearray(encode(Submit(sequence_id=1, dest_terminal_ids=("13800138000",)), version))
    frame[12 + 12:12 + 12 + len(service_id)] = service_id
    src_at = 119 if is_v3(version) else 107   # header, Msg_Id .. At_Time (cmpp.md §5)
    assert frame[src_at:src_at + 21] == bytes(21)
    frame[src_at:src_at + len(src_id)] = src_id
    submit = decode(bytes(frame), version)
    assert encode(submit, version) == bytes(frame)
    deliver = make_report_deliver(2, 3, 4, "MA:0001", datetime(2024, 1, 1), datetime(2024, 1, 1),
                                  "13800138000", 0, submit.src_id, submit.service_id, version)
    wire = encode(deliver, version)
    assert wire[12 + 8:12 + 8 + 21].rstrip(b"\0") == src_id
    assert wire[12 + 29:12 + 39].rstrip(b"\0") == service_id
    assert decode(wire, version) == deliver


def test_gbk_service_id_round_trips():
    frame = bytearray(encode(Submit(sequence_id=1, service_id="SVC"), V21))
    frame[12 + 12:12 + 15] = "短".encode("gbk") + b"X"
    submit = decode(bytes(frame), V21)
    assert submit.service_id == "\xb6\xccX"
    assert encode(submit, V21) == bytes(frame)


def test_decode_accepts_bytearray_and_memoryview():
    frame = encode(ActiveTestResp(sequence_id=5), V30)
    assert decode(bytearray(frame), V30) == decode(memoryview(frame), V30) == ActiveTestResp(5)


# ---- bad input: only CmppDecodeError, with a clear message ---------------------------------

def assert_decode_error(frame: bytes, version: int) -> CmppDecodeError:
    with pytest.raises(CmppDecodeError) as info:
        decode(frame, version)
    return info.value


@pytest.mark.parametrize("version", VERSIONS, ids=hex)
@SLOW
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_decode_error(version, data):
    try:
        decode(data, version)
    except CmppDecodeError:
        pass


@pytest.mark.parametrize("version", VERSIONS, ids=hex)
@SLOW
@given(command_id=st.sampled_from(sorted(c.COMMAND_NAMES)) | u32, seq=u32,
       body=st.binary(max_size=400))
def test_random_bodies_behind_a_consistent_header_raise_only_decode_error(
        version, command_id, seq, body):
    frame = struct.pack(">III", 12 + len(body), command_id, seq) + body
    try:
        decode(frame, version)
    except CmppDecodeError as e:
        assert (e.sequence_id, e.command_id) == (seq, command_id)


@pytest.mark.parametrize("version", VERSIONS, ids=hex)
@FAST
@given(data=st.data())
def test_truncated_frames_raise_decode_error(version, data):
    frame = encode(data.draw(any_packet(version)), version)
    cut = data.draw(st.integers(0, len(frame) - 1))
    error = assert_decode_error(frame[:cut], version)
    if cut >= 12:
        assert error.sequence_id == int.from_bytes(frame[8:12], "big")
    else:
        assert error.sequence_id is None and error.command_id is None
    if cut >= 12:  # also with Total_Length patched to the cut, so the body checks are reached
        patched = cut.to_bytes(4, "big") + frame[4:cut]
        assert_decode_error(patched, version)


@pytest.mark.parametrize("version", VERSIONS, ids=hex)
@SLOW
@given(data=st.data())
def test_corrupted_frames_decode_or_raise_decode_error(version, data):
    frame = bytearray(encode(data.draw(any_packet(version)), version))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(4, len(frame) - 1))] = data.draw(u8)
    try:
        decode(bytes(frame), version)
    except CmppDecodeError:
        pass


def test_wrong_total_length_for_a_fixed_command():
    frame = encode(SubmitResp(sequence_id=9), V20)  # 21 bytes: a 2.x SUBMIT_RESP
    error = assert_decode_error(frame, V30)
    assert (error.sequence_id, error.command_id) == (9, c.SUBMIT_RESP)
    assert "Total_Length 21" in str(error) and "24 bytes in CMPP 3.0" in str(error)


def test_total_length_must_equal_the_frame_size():
    frame = encode(ActiveTest(sequence_id=3), V30) + b"\0"
    error = assert_decode_error(frame, V30)
    assert error.sequence_id == 3 and "Total_Length says 12" in str(error)


def test_unknown_command_id_is_named():
    error = assert_decode_error(struct.pack(">III", 12, 0x00000009, 4), V30)
    assert (error.sequence_id, error.command_id) == (4, 9)
    assert "CMPP_FWD" in str(error)
    error = assert_decode_error(struct.pack(">III", 12, 0x12345678, 4), V30)
    assert "0x12345678" in str(error)


def test_submit_of_the_other_version_is_rejected():
    submit = Submit(sequence_id=7, dest_terminal_ids=("13800138000",), msg_content=b"hi")
    error = assert_decode_error(encode(submit, V30), V20)
    assert (error.sequence_id, error.command_id) == (7, c.SUBMIT)
    assert_decode_error(encode(submit, V20), V30)


def test_dest_usr_tl_zero_that_does_not_fit():
    frame = bytearray(encode(Submit(sequence_id=7, dest_terminal_ids=("1380013800",)), V20))
    frame[12 + 116] = 0  # DestUsr_tl
    error = assert_decode_error(bytes(frame), V20)
    assert "DestUsr_tl=0" in str(error) and error.sequence_id == 7


def test_dest_usr_tl_beyond_the_frame():
    frame = bytearray(encode(Submit(sequence_id=7, dest_terminal_ids=("1",)), V30))
    frame[12 + 128] = 200
    error = assert_decode_error(bytes(frame), V30)
    assert "DestUsr_tl=200 needs at least" in str(error)


@pytest.mark.parametrize("cls,offset", [(Submit, 12 + 130 + 32), (Deliver, 12 + 76)])
def test_msg_length_overrunning_the_frame(cls, offset):
    packet = (cls(sequence_id=8, dest_terminal_ids=("1",), msg_content=b"abc") if cls is Submit
              else cls(sequence_id=8, msg_content=b"abc"))
    frame = bytearray(encode(packet, V30))
    assert frame[offset] == 3
    frame[offset] = 250
    error = assert_decode_error(bytes(frame), V30)
    assert "Msg_Length=250" in str(error) and error.sequence_id == 8


def test_truncated_fixed_part_of_submit_and_deliver():
    for packet in (Submit(sequence_id=1), Deliver(sequence_id=1)):
        frame = encode(packet, V30)[:60]
        error = assert_decode_error((60).to_bytes(4, "big") + frame[4:], V30)
        assert "truncated" in str(error)


def test_unsupported_version():
    with pytest.raises(CmppDecodeError, match="0x02"):
        decode(encode(ActiveTest(sequence_id=1), V30), 0x02)
    with pytest.raises(CmppEncodeError, match="0x31"):
        encode(ActiveTest(sequence_id=1), 0x31)
    with pytest.raises(ValueError):
        is_v3(0x02)


def test_decode_connect_rejects_other_commands():
    assert decode_connect(encode(Connect(sequence_id=2), V30)) == Connect(sequence_id=2)
    with pytest.raises(CmppDecodeError, match="expected CMPP_CONNECT") as info:
        decode_connect(encode(ActiveTest(sequence_id=2), V30))
    assert info.value.command_id == c.ACTIVE_TEST


# ---- encode: invalid values raise CmppEncodeError naming the field --------------------------

@pytest.mark.parametrize("packet,version,message", [
    (Submit(sequence_id=1, service_id="x" * 11), V30, "Submit.service_id has 11 characters"),
    (Submit(sequence_id=1, src_id="短信"), V30, "Submit.src_id must be ASCII"),
    (Submit(sequence_id=1, msg_src="a\0b"), V30, "without NUL"),
    (Submit(sequence_id=1, fee_code=10), V30, "Submit.fee_code must be str, not int"),
    (Submit(sequence_id=1, msg_content=bytes(256)), V30, "256 bytes, at most 255"),
    (Submit(sequence_id=1, msg_content="text"), V30, "msg_content must be bytes"),
    (Submit(sequence_id=1, dest_terminal_ids="13800138000"), V30, "must be a tuple of str"),
    (Submit(sequence_id=1, dest_terminal_ids=("1" * 22,)), V20, "dest_terminal_ids has 22"),
    (Submit(sequence_id=1, dest_terminal_ids=("1",) * 256), V30, "256 recipients"),
    (Submit(sequence_id=1, fee_terminal_id="1" * 22), V20, "fee_terminal_id has 22"),
    (Submit(sequence_id=1, link_id="x" * 9), V20, "link_id has 9 characters, its field holds 8"),
    (Submit(sequence_id=1, fee_terminal_type=1), V20, "fee_terminal_type=1 exists only in CMPP"),
    (Submit(sequence_id=1, dest_terminal_type=1), V21, "dest_terminal_type=1 exists only"),
    (Deliver(sequence_id=1, src_terminal_type=1), V20, "src_terminal_type=1 exists only"),
    (Submit(sequence_id=1, pk_total=256), V30, "Submit.pk_total=256 is not an unsigned 8-bit"),
    (Submit(sequence_id=1, msg_id=-1), V30, "Submit.msg_id=-1 is not an unsigned 64-bit"),
    (Submit(sequence_id=1, dest_terminal_type=256), V30, "dest_terminal_type=256"),
    (Submit(sequence_id=2 ** 32), V30, "sequence_id=4294967296 is not an unsigned 32-bit"),
    (Deliver(sequence_id=1, tp_udhi=1.0), V30, "Deliver.tp_udhi=1.0"),
    (ConnectResp(sequence_id=1, status=256), V20, "ConnectResp.status=256 is not an unsigned 8"),
    (SubmitResp(sequence_id=1, result=0x100), V21, "SubmitResp.result=256"),
    (CancelResp(sequence_id=1, success_id=-1), V30, "CancelResp.success_id=-1"),
    (Connect(sequence_id=1, authenticator_source=bytes(15)), V30, "exactly 16 bytes"),
    (Connect(sequence_id=1, source_addr="9000011"), V30, "source_addr has 7"),
    (StatusReport(), V30, "not a CMPP packet: StatusReport"),
])
def test_invalid_values_raise_encode_error(packet, version, message):
    with pytest.raises(CmppEncodeError, match=message.replace(".", r"\.")):
        encode(packet, version)


def test_status_fields_are_four_bytes_in_3_0():
    assert encode(ConnectResp(sequence_id=1, status=256), V30)[12:16] == b"\0\0\1\0"
    assert encode(CancelResp(sequence_id=1, success_id=1), V20)[12:] == b"\1"


# ---- Framer -------------------------------------------------------------------------------

def feed_in_pieces(framer: Framer, stream: bytes, cuts: list[int]) -> list:
    received = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in zip(bounds, bounds[1:]):
        framer.feed(stream[start:end])
        received.extend(framer)
    return received


@pytest.mark.parametrize("version", VERSIONS, ids=hex)
@SLOW
@given(data=st.data())
def test_framer_yields_the_same_packets_for_any_split(version, data):
    packets = data.draw(st.lists(any_packet(version), min_size=1, max_size=6))
    stream = b"".join(encode(p, version) for p in packets)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    framer = Framer(version)
    assert feed_in_pieces(framer, stream, cuts) == packets
    assert framer.next_packet() is None


def test_framer_byte_by_byte():
    packets = [ActiveTest(1), Submit(2, dest_terminal_ids=("1",), msg_content=b"x" * 255),
               TerminateResp(3)]
    stream = b"".join(encode(p, V21) for p in packets)
    assert feed_in_pieces(Framer(V21), stream, list(range(len(stream)))) == packets


def test_framer_before_login_decodes_only_connect():
    framer = Framer()
    framer.feed(encode(Connect(sequence_id=1, version=V20), V30) + encode(ActiveTest(2), V30))
    connect = framer.next_packet()
    assert connect == Connect(sequence_id=1, version=V20)
    with pytest.raises(CmppDecodeError, match="expected CMPP_CONNECT"):
        framer.next_packet()
    framer.version = connect.version
    framer.feed(encode(SubmitResp(3), V20))
    assert list(framer) == [SubmitResp(3)]


def test_framer_rejects_an_unusable_version():
    with pytest.raises(ValueError):
        Framer(0x02)
    framer = Framer()
    with pytest.raises(ValueError):
        framer.version = 0x31


@pytest.mark.parametrize("total", [0, 11, 4097, 0xFFFFFFFF])
def test_framer_bad_total_length_is_fatal(total):
    framer = Framer(V30)
    framer.feed(struct.pack(">III", total, c.SUBMIT, 77) + encode(ActiveTest(1), V30))
    for _ in range(2):  # the stream cannot be resynchronised: every call fails the same way
        with pytest.raises(CmppDecodeError, match=f"Total_Length {total} outside 12..4096") as info:
            framer.next_packet()
        assert (info.value.sequence_id, info.value.command_id) == (77, c.SUBMIT)


def test_framer_max_packet_size_is_configurable():
    frame = encode(Submit(1, dest_terminal_ids=("1",) * 100, msg_content=bytes(255)), V30)
    assert len(frame) > 3000
    framer = Framer(V30, max_packet_size=3000)
    framer.feed(frame)
    with pytest.raises(CmppDecodeError, match="outside 12..3000"):
        framer.next_packet()
    framer = Framer(V30, max_packet_size=len(frame))
    framer.feed(frame)
    assert framer.next_packet().msg_content == bytes(255)
    with pytest.raises(ValueError):
        Framer(V30, max_packet_size=11)


def test_framer_continues_after_a_bad_body():
    bad = struct.pack(">III", 13, c.ACTIVE_TEST, 5) + b"\0"  # ACTIVE_TEST has no body
    framer = Framer(V30)
    framer.feed(bad + encode(ActiveTest(6), V30))
    with pytest.raises(CmppDecodeError) as info:
        framer.next_packet()
    assert info.value.sequence_id == 5
    assert framer.next_packet() == ActiveTest(6)


def test_framer_waits_for_the_whole_header():
    framer = Framer(V30)
    framer.feed(struct.pack(">I", 5000))  # a bad length, but seq/cmd are not readable yet
    assert framer.next_packet() is None
    framer.feed(struct.pack(">II", c.SUBMIT, 1))
    with pytest.raises(CmppDecodeError):
        framer.next_packet()


# ---- status reports -----------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS, ids=hex)
@FAST
@given(report=st.builds(StatusReport, msg_id=u64,
                        stat=st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                     min_size=7, max_size=7),
                        submit_time=text(10), done_time=text(10), dest_terminal_id=text(21),
                        smsc_sequence=u32))
def test_report_round_trip(version, report):
    body = encode_report(report, version)
    assert len(body) == (71 if is_v3(version) else 60)
    assert decode_report(body, version) == report


@pytest.mark.parametrize("version", VERSIONS, ids=hex)
def test_report_deliver_round_trip(version):
    deliver = make_report_deliver(
        seq=41, msg_id_for_deliver=0x1111, submit_msg_id=0xB4C5530000010000, stat="MA:0001",
        submit_time=datetime(2015, 11, 12, 9, 55, 31), done_time=datetime(2015, 11, 12, 9, 57),
        dest_terminal_id="13412340000", smsc_sequence=7, dest_id="10690001",
        service_id="svc", version=version)
    received = decode(encode(deliver, version), version)
    assert (received.sequence_id, received.msg_id, received.registered_delivery,
            received.src_terminal_id, received.dest_id, received.service_id) == (
        41, 0x1111, 1, "13412340000", "10690001", "svc")
    assert parse_report(received, version) == StatusReport(
        msg_id=0xB4C5530000010000, stat="MA:0001", submit_time="1511120955",
        done_time="1511120957", dest_terminal_id="13412340000", smsc_sequence=7)


def test_six_character_stat_is_nul_padded_on_the_wire():
    deliver = make_report_deliver(1, 1, 1, "MO:200", datetime(2024, 1, 1), datetime(2024, 1, 1),
                                  "13800138000", 1, "1069", "svc", V20)
    assert deliver.msg_content[8:15] == b"MO:200\0"
    assert parse_report(deliver, V20).stat == "MO:200"


@pytest.mark.parametrize("stat", ["DELIVRDX", "", "MA:000é", "MA\t0001", None])
def test_stat_must_be_one_to_seven_ascii_characters(stat):
    with pytest.raises(CmppEncodeError, match="1 to 7"):
        make_report_deliver(1, 1, 1, stat, datetime(2024, 1, 1), datetime(2024, 1, 1),
                            "13800138000", 1, "1069", "svc", V30)


def test_parse_report_errors_carry_the_deliver_sequence_id():
    mo = Deliver(sequence_id=12, registered_delivery=0, msg_content=bytes(71))
    with pytest.raises(CmppDecodeError, match="not a status report") as info:
        parse_report(mo, V30)
    assert (info.value.sequence_id, info.value.command_id) == (12, c.DELIVER)
    short = Deliver(sequence_id=13, registered_delivery=1, msg_content=bytes(60))
    with pytest.raises(CmppDecodeError, match="60 bytes, CMPP 3.0 reports are 71") as info:
        parse_report(short, V30)
    assert info.value.sequence_id == 13
