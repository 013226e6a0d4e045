"""Status reports: the Msg_Content of a DELIVER with Registered_Delivery=1 (cmpp.md §7)."""

import struct
from datetime import datetime

from . import constants as c
from .codec import CmppDecodeError, CmppEncodeError, _ascii, _cstr
from .packets import Deliver, StatusReport

# Msg_Id, Stat, Submit_time, Done_time, Dest_terminal_Id (21 in 2.x, 32 in 3.0), SMSC_sequence
_REPORT = (struct.Struct(">Q7s10s10s21sI"), struct.Struct(">Q7s10s10s32sI"))
_DEST_WIDTH = (21, 32)


def encode_report(report: StatusReport, version: int) -> bytes:
    """The 60-byte (2.x) or 71-byte (3.0) report body."""
    v3 = c.is_v3(version)
    stat = report.stat
    # Stat is a fixed 7-byte field on every hop. Cutting a code would turn it into something no
    # customer's parser recognises, so longer values are refused; the seed's two 6-character
    # codes (MO:200, MO:201) go out left-aligned and NUL-padded, like every CMPP octet string.
    if not (isinstance(stat, str) and 1 <= len(stat) <= 7 and stat.isascii() and stat.isprintable()):
        raise CmppEncodeError(f"StatusReport.stat must be 1 to 7 printable ASCII characters, "
                              f"got {stat!r}")
    fields = (
        report.msg_id,
        stat.encode("ascii"),
        _ascii(report.submit_time, 10, "StatusReport.submit_time"),
        _ascii(report.done_time, 10, "StatusReport.done_time"),
        _ascii(report.dest_terminal_id, _DEST_WIDTH[v3], "StatusReport.dest_terminal_id"),
        report.smsc_sequence,
    )
    try:
        return _REPORT[v3].pack(*fields)
    except struct.error as e:
        raise CmppEncodeError(f"StatusReport.msg_id/smsc_sequence out of range: {e}") from None


def decode_report(content: bytes, version: int) -> StatusReport:
    v3 = c.is_v3(version)
    layout = _REPORT[v3]
    if len(content) != layout.size:
        raise CmppDecodeError(f"status report is {len(content)} bytes, CMPP "
                              f"{'3.0' if v3 else '2.x'} reports are {layout.size}")
    msg_id, stat, submit_time, done_time, dest, smsc_sequence = layout.unpack(content)
    return StatusReport(msg_id, _cstr(stat), _cstr(submit_time), _cstr(done_time), _cstr(dest),
                        smsc_sequence)


def make_report_deliver(seq: int, msg_id_for_deliver: int, submit_msg_id: int, stat: str,
                        submit_time: datetime, done_time: datetime, dest_terminal_id: str,
                        smsc_sequence: int, dest_id: str, service_id: str, version: int) -> Deliver:
    """A DELIVER carrying a status report for one recipient of a SUBMIT.

    `dest_id` is the SUBMIT's Src_Id, `dest_terminal_id` the recipient; the report body is laid
    out for `version`, so encode the DELIVER with the same version.
    """
    report = StatusReport(
        msg_id=submit_msg_id,
        stat=stat,
        submit_time=submit_time.strftime("%y%m%d%H%M"),
        done_time=done_time.strftime("%y%m%d%H%M"),
        dest_terminal_id=dest_terminal_id,
        smsc_sequence=smsc_sequence,
    )
    return Deliver(
        sequence_id=seq,
        msg_id=msg_id_for_deliver,
        dest_id=dest_id,
        service_id=service_id,
        src_terminal_id=dest_terminal_id,  # a report's "source" is the SUBMIT's recipient
        registered_delivery=1,
        msg_content=encode_report(report, version),
    )


def parse_report(deliver: Deliver, version: int) -> StatusReport:
    """The report inside a DELIVER; CmppDecodeError (carrying the DELIVER's Sequence_Id) if the
    DELIVER is an MO message or its body has the wrong size for `version`."""
    if deliver.registered_delivery != 1:
        raise CmppDecodeError(
            f"CMPP_DELIVER (Sequence_Id {deliver.sequence_id}) is not a status report "
            f"(Registered_Delivery={deliver.registered_delivery})", deliver.sequence_id, c.DELIVER)
    try:
        return decode_report(deliver.msg_content, version)
    except CmppDecodeError as e:
        raise CmppDecodeError(f"CMPP_DELIVER (Sequence_Id {deliver.sequence_id}): {e}",
                              deliver.sequence_id, c.DELIVER) from None
