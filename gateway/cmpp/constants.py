"""CMPP command ids, protocol versions and size limits (reference: cmpp.md §1, §2)."""

HEADER_SIZE = 12

CONNECT = 0x00000001
TERMINATE = 0x00000002
SUBMIT = 0x00000004
DELIVER = 0x00000005
QUERY = 0x00000006
CANCEL = 0x00000007
ACTIVE_TEST = 0x00000008
RESP = 0x80000000  # a response id is its request id with the top bit set
CONNECT_RESP = CONNECT | RESP
TERMINATE_RESP = TERMINATE | RESP
SUBMIT_RESP = SUBMIT | RESP
DELIVER_RESP = DELIVER | RESP
QUERY_RESP = QUERY | RESP
CANCEL_RESP = CANCEL | RESP
ACTIVE_TEST_RESP = ACTIVE_TEST | RESP

# Every Command_Id of the spec, also the ones this codec does not implement (FWD and the GNS
# route commands are ISMG-internal), so that errors can name what a peer actually sent.
COMMAND_NAMES = {
    CONNECT: "CMPP_CONNECT",
    TERMINATE: "CMPP_TERMINATE",
    SUBMIT: "CMPP_SUBMIT",
    DELIVER: "CMPP_DELIVER",
    QUERY: "CMPP_QUERY",
    CANCEL: "CMPP_CANCEL",
    ACTIVE_TEST: "CMPP_ACTIVE_TEST",
    0x00000009: "CMPP_FWD",
    0x00000010: "CMPP_MT_ROUTE",
    0x00000011: "CMPP_MO_ROUTE",
    0x00000012: "CMPP_GET_MT_ROUTE",
    0x00000013: "CMPP_MT_ROUTE_UPDATE",
    0x00000014: "CMPP_MO_ROUTE_UPDATE",
    0x00000015: "CMPP_PUSH_MT_ROUTE_UPDATE",
    0x00000016: "CMPP_PUSH_MO_ROUTE_UPDATE",
    0x00000017: "CMPP_GET_MO_ROUTE",
}
COMMAND_NAMES.update({cid | RESP: name + "_RESP" for cid, name in list(COMMAND_NAMES.items())})

V20 = 0x20
V21 = 0x21  # sent by many 2.x clients (e.g. pycmpp); same wire format as 0x20
V30 = 0x30
_IS_V3 = {V20: False, V21: False, V30: True}

# Largest legitimate frame is a 3.0 SUBMIT with 99 recipients and 255 content bytes:
# 163 + 32*99 + 255 = 3586 bytes. Anything bigger is garbage or an attack on our buffers.
DEFAULT_MAX_PACKET_SIZE = 4096


def command_name(command_id: int) -> str:
    return COMMAND_NAMES.get(command_id, f"unknown Command_Id 0x{command_id:08x}")


def is_v3(version: int) -> bool:
    """True for the 3.0 wire format, False for 2.x (0x20 and 0x21).

    Raises ValueError for any other version byte: field widths depend on it, so guessing would
    silently misparse every later packet.
    """
    try:
        return _IS_V3[version]
    except (KeyError, TypeError):
        shown = f"0x{version:02x}" if isinstance(version, int) else repr(version)
        raise ValueError(f"unsupported CMPP version {shown}; expected 0x20, 0x21 or 0x30") from None
