"""Pure CMPP 2.x/3.0 codec (no I/O): packets, framing, authentication, Msg_Id, long SMS."""

from .auth import authenticator_ismg, authenticator_source, timestamp_now, timestamp_to_datetime
from .codec import CmppDecodeError, CmppEncodeError, Framer, decode, decode_connect, encode
from .constants import DEFAULT_MAX_PACKET_SIZE, V20, V21, V30, is_v3
from .msgid import MsgIdGenerator, pack_msg_id, unpack_msg_id
from .packets import (
    ActiveTest, ActiveTestResp, Cancel, CancelResp, Connect, ConnectResp, Deliver, DeliverResp,
    Packet, Query, QueryResp, StatusReport, Submit, SubmitResp, Terminate, TerminateResp,
)
from .report import decode_report, encode_report, make_report_deliver, parse_report
from .smpptime import parse_smpp_time
from .udh import count_segments, decode_content, encode_content, parse_udh, split_ucs2, udhi_set

__all__ = [
    "ActiveTest", "ActiveTestResp", "Cancel", "CancelResp", "CmppDecodeError", "CmppEncodeError",
    "Connect", "ConnectResp", "DEFAULT_MAX_PACKET_SIZE", "Deliver", "DeliverResp", "Framer",
    "MsgIdGenerator", "Packet", "Query", "QueryResp", "StatusReport", "Submit", "SubmitResp",
    "Terminate", "TerminateResp", "V20", "V21", "V30", "authenticator_ismg",
    "authenticator_source", "count_segments", "decode", "decode_connect", "decode_content",
    "decode_report", "encode", "encode_content", "encode_report", "is_v3", "make_report_deliver",
    "pack_msg_id", "parse_report", "parse_smpp_time", "parse_udh", "split_ucs2", "timestamp_now",
    "timestamp_to_datetime", "udhi_set", "unpack_msg_id",
]
