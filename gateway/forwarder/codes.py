"""The Stat a customer's report carries when forwarding, not the handset, decided the outcome
(seed code table, "MO:" rows). Stat is a 7-byte field: the 6-character codes MO:200 and MO:201
are kept as the seed writes them and go out left-aligned, NUL-padded (b"MO:200\\0")."""

UPSTREAM_TIMEOUT = "MO:0254"     # no SUBMIT_RESP within upstream_submit_timeout
LINK_LOST = "MO:0255"            # the connection dropped with the SUBMIT in flight
LONG_NOT_SUPPORTED = "MO:200"    # the message needs several parts, the channel takes one
HTTP_FAILED = "MO:201"           # the HTTP channel's POST failed or was refused
NO_REPORT = "UNKNOWN"            # the upstream never reported within report_map_hours
UNSENDABLE = "MA:0009"           # 未定义错误: a field does not fit this upstream's CMPP version


def upstream_result(result: int) -> str:
    """MO:NNNN for the upstream's non-zero SUBMIT_RESP Result. CMPP 3.0 Results are 32-bit;
    anything above 9999 cannot be shown in 4 digits and reads MO:9999."""
    if result <= 0:
        raise ValueError(f"Result {result} is not an upstream error")
    return f"MO:{min(result, 9999):04d}"
