"""One frozen dataclass per CMPP packet.

Field names are the spec's, in snake_case and in wire order (the codec relies on that order).
Strings are ASCII `str` (NUL-padded on the wire); Msg_Content and the authenticators are bytes.
Fields that exist in only one protocol version have defaults, so a packet can be built once
and encoded for either version when it fits:

* 3.0 only: `fee_terminal_type`, `dest_terminal_type`, `src_terminal_type` (must be 0 for 2.x);
* `link_id` is LinkID (20 bytes) in 3.0 and the Reserve field (8 bytes) in 2.x.
"""

from dataclasses import dataclass

from .constants import V30

_packet = dataclass(frozen=True, slots=True)


@_packet
class Connect:
    sequence_id: int
    source_addr: str = ""
    authenticator_source: bytes = bytes(16)
    version: int = V30
    timestamp: int = 0  # MMDDHHMMSS as an integer, see auth.timestamp_now


@_packet
class ConnectResp:
    sequence_id: int
    status: int = 0
    authenticator_ismg: bytes = bytes(16)  # all zero when authentication failed
    version: int = V30


@_packet
class Terminate:
    sequence_id: int


@_packet
class TerminateResp:
    sequence_id: int


@_packet
class Submit:
    sequence_id: int
    msg_id: int = 0
    pk_total: int = 1
    pk_number: int = 1
    registered_delivery: int = 0
    msg_level: int = 0
    service_id: str = ""
    fee_user_type: int = 0
    fee_terminal_id: str = ""
    fee_terminal_type: int = 0
    tp_pid: int = 0
    tp_udhi: int = 0
    msg_fmt: int = 0
    msg_src: str = ""
    fee_type: str = ""
    fee_code: str = ""
    valid_time: str = ""
    at_time: str = ""
    src_id: str = ""
    dest_terminal_ids: tuple[str, ...] = ()
    dest_terminal_type: int = 0
    msg_content: bytes = b""
    link_id: str = ""


@_packet
class SubmitResp:
    sequence_id: int
    msg_id: int = 0
    result: int = 0


@_packet
class Deliver:
    sequence_id: int
    msg_id: int = 0
    dest_id: str = ""
    service_id: str = ""
    tp_pid: int = 0
    tp_udhi: int = 0
    msg_fmt: int = 0
    src_terminal_id: str = ""
    src_terminal_type: int = 0
    registered_delivery: int = 0  # 1: msg_content is a status report (report.parse_report)
    msg_content: bytes = b""
    link_id: str = ""


@_packet
class DeliverResp:
    sequence_id: int
    msg_id: int = 0
    result: int = 0


@_packet
class ActiveTest:
    sequence_id: int


@_packet
class ActiveTestResp:
    sequence_id: int
    reserved: int = 0


@_packet
class Query:
    sequence_id: int
    time: str = ""  # YYYYMMDD
    query_type: int = 0
    query_code: str = ""
    reserve: str = ""


@_packet
class QueryResp:
    sequence_id: int
    time: str = ""
    query_type: int = 0
    query_code: str = ""
    mt_tlmsg: int = 0
    mt_tlusr: int = 0
    mt_scs: int = 0
    mt_wt: int = 0
    mt_fl: int = 0
    mo_scs: int = 0
    mo_wt: int = 0
    mo_fl: int = 0


@_packet
class Cancel:
    sequence_id: int
    msg_id: int = 0


@_packet
class CancelResp:
    sequence_id: int
    success_id: int = 0


@_packet
class StatusReport:
    """Msg_Content of a DELIVER with registered_delivery=1 (60 bytes in 2.x, 71 in 3.0).

    Not a packet of its own, hence no sequence_id.
    """

    msg_id: int = 0  # the Msg_Id returned in SUBMIT_RESP (+ recipient index for group sends)
    stat: str = ""  # exactly 7 ASCII characters, e.g. "DELIVRD" or "MA:0001"
    submit_time: str = ""  # YYMMDDHHMM
    done_time: str = ""  # YYMMDDHHMM
    dest_terminal_id: str = ""
    smsc_sequence: int = 0


Packet = (
    Connect | ConnectResp | Terminate | TerminateResp | Submit | SubmitResp | Deliver
    | DeliverResp | ActiveTest | ActiveTestResp | Query | QueryResp | Cancel | CancelResp
)
