"""Every published byte vector (tests/gateway/vectors.txt) reproduced by encode and read back
by decode. Field values are those of cmpp.md §14."""

from pathlib import Path

import pytest

from gateway.cmpp import (
    V20, V21, V30, ActiveTest, ActiveTestResp, Connect, ConnectResp, Deliver, DeliverResp,
    StatusReport, Submit, SubmitResp, Terminate, TerminateResp, decode, decode_connect,
    decode_report, encode, encode_report,
)

ALL = (V20, V21, V30)
V2X = (V20, V21)

SUBMIT = dict(
    sequence_id=0x17, msg_id=0, pk_total=1, pk_number=1, registered_delivery=1, msg_level=1,
    service_id="test", fee_user_type=2, fee_terminal_id="13500002696", tp_pid=0, tp_udhi=0,
    msg_fmt=8, msg_src="900001", fee_type="02", fee_code="10", valid_time="151105131555101+",
    at_time="", src_id="900001", dest_terminal_ids=("13500002696",),
    msg_content="测试gocmpp submit".encode("utf-16-be"), link_id="",
)
REPORT = StatusReport(msg_id=0xB4C5530000010000, stat="DELIVRD", submit_time="1511120955",
                      done_time="1511120957", dest_terminal_id="13412340000",
                      smsc_sequence=0x12345678)

# name in vectors.txt -> (value, versions whose wire format it is)
CASES = {
    "CONNECT v0x21 len=": (
        Connect(sequence_id=0x17, source_addr="900001",
                authenticator_source=bytes.fromhex("90d00c1d517abd0b4f65f6bcf8535d16"),
                version=0x21, timestamp=1021080510), ALL),
    "CONNECT_RESP 2.x len=": (
        ConnectResp(sequence_id=0x17, status=0, version=0x21,
                    authenticator_ismg=bytes.fromhex("6c0b846e25bab6daa4ed1c466e0f4bd8")), V2X),
    "CONNECT_RESP 3.0 len=": (
        ConnectResp(sequence_id=0x17, status=0, version=0x30,
                    authenticator_ismg=bytes.fromhex("7942977274098cf210ab0c16c367bc8d")), (V30,)),
    "SUBMIT 2.x": (Submit(**SUBMIT), V2X),
    "SUBMIT 3.0": (Submit(**SUBMIT, fee_terminal_type=0, dest_terminal_type=0), (V30,)),
    "SUBMIT_RESP 2.x len=": (SubmitResp(sequence_id=0x17, msg_id=0xB2B9DA8000010000), V2X),
    "SUBMIT_RESP 3.0 len=": (SubmitResp(sequence_id=0x17, msg_id=0xB2B9DA8000010000), (V30,)),
    "DELIVER 3.0": (
        Deliver(sequence_id=1, msg_id=0xB4C5530000010000, dest_id="900001", service_id="",
                tp_pid=0, tp_udhi=0, msg_fmt=0, src_terminal_id="13412340000",
                src_terminal_type=0, registered_delivery=0, msg_content=b"This is a test MO.",
                link_id=""), (V30,)),
    "DELIVER_RESP 3.0 len=": (DeliverResp(sequence_id=1, msg_id=0xB4C5530000010000, result=0),
                              (V30,)),
    "REPORT body (2.x, 60B) len=": (REPORT, V2X),
    "ACTIVE_TEST len=": (ActiveTest(sequence_id=0x17), ALL),
    "ACTIVE_TEST_RESP len=": (ActiveTestResp(sequence_id=0x17, reserved=0), ALL),
    "TERMINATE len=": (Terminate(sequence_id=0x17), ALL),
    "TERMINATE_RESP len=": (TerminateResp(sequence_id=0x17), ALL),
}


def load_vectors() -> dict[str, bytes]:
    vectors: dict[str, bytes] = {}
    name = None
    for line in Path(__file__).with_name("vectors.txt").read_text().splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            vectors[name] = b""
        elif line.strip() and not line.startswith("#"):
            vectors[name] += bytes.fromhex(line)
    return vectors


VECTORS = load_vectors()
PARAMS = [(name, version) for name, (_, versions) in CASES.items() for version in versions]


def test_every_vector_has_a_case():
    assert len(VECTORS) == 14
    assert set(VECTORS) == set(CASES)


@pytest.mark.parametrize("name,version", PARAMS)
def test_encode_reproduces_vector(name, version):
    value, _ = CASES[name]
    if isinstance(value, StatusReport):
        assert encode_report(value, version) == VECTORS[name]
    else:
        assert encode(value, version) == VECTORS[name]


@pytest.mark.parametrize("name,version", PARAMS)
def test_decode_reads_vector(name, version):
    value, _ = CASES[name]
    if isinstance(value, StatusReport):
        assert decode_report(VECTORS[name], version) == value
    else:
        assert decode(VECTORS[name], version) == value


def test_connect_decodes_before_version_is_known():
    assert decode_connect(VECTORS["CONNECT v0x21 len="]) == CASES["CONNECT v0x21 len="][0]


def test_vector_lengths_match_the_spec_tables():
    lengths = {name: len(data) for name, data in VECTORS.items()}
    assert lengths == {
        "CONNECT v0x21 len=": 39, "CONNECT_RESP 2.x len=": 30, "CONNECT_RESP 3.0 len=": 33,
        "SUBMIT 2.x": 138 + 21 + 30, "SUBMIT 3.0": 163 + 32 + 30,
        "SUBMIT_RESP 2.x len=": 21, "SUBMIT_RESP 3.0 len=": 24,
        "DELIVER 3.0": 109 + 18, "DELIVER_RESP 3.0 len=": 24,
        "REPORT body (2.x, 60B) len=": 60,
        "ACTIVE_TEST len=": 12, "ACTIVE_TEST_RESP len=": 13,
        "TERMINATE len=": 12, "TERMINATE_RESP len=": 12,
    }


def test_report_3_0_is_the_2x_vector_with_a_32_byte_number():
    # No public 3.0 report vector exists (cmpp.md §14 V8): derived from the 2.x one.
    v2 = VECTORS["REPORT body (2.x, 60B) len="]
    v3 = v2[:56] + bytes(11) + v2[56:]
    assert encode_report(REPORT, V30) == v3
    assert decode_report(v3, V30) == REPORT


def test_deliver_2x_layout():
    # No public 2.x DELIVER vector exists: the 3.0 one with a 21-byte Src_terminal_Id, no
    # Src_terminal_type and an 8-byte Reserve instead of the 20-byte LinkID.
    v3 = VECTORS["DELIVER 3.0"]
    body = v3[12:42 + 12] + v3[54:54 + 21] + v3[54 + 32 + 1:54 + 32 + 1 + 2 + 18] + bytes(8)
    v2 = (12 + len(body)).to_bytes(4, "big") + v3[4:12] + body
    deliver = CASES["DELIVER 3.0"][0]
    assert len(v2) == 85 + 18
    assert encode(deliver, V21) == v2
    assert decode(v2, V20) == deliver
