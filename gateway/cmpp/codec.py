"""Pure CMPP codec: whole frames to packet objects and back, plus an incremental Framer.

No I/O here: callers feed whatever bytes arrived and write whatever bytes we return. Layouts
follow cmpp.md §3-§8; the tables below are those sections' tables, with `_ByVersion` where
2.x and 3.0 differ (checklist §16).
"""

import struct
from dataclasses import fields
from functools import partial
from operator import attrgetter
from typing import Iterator, NamedTuple

from . import constants as c
from .packets import (
    ActiveTest, ActiveTestResp, Cancel, CancelResp, Connect, ConnectResp, Deliver, DeliverResp,
    Packet, Query, QueryResp, Submit, SubmitResp, Terminate, TerminateResp,
)


class CmppDecodeError(ValueError):
    """A frame that cannot be decoded.

    `sequence_id` and `command_id` are set whenever the 12-byte header was readable, so a server
    can still answer the request (e.g. SUBMIT_RESP with Result 1) instead of dropping it.
    """

    def __init__(self, message: str, sequence_id: int | None = None, command_id: int | None = None):
        super().__init__(message)
        self.sequence_id = sequence_id
        self.command_id = command_id


class CmppEncodeError(ValueError):
    """A packet holding a value its wire field cannot carry."""


# ---- field kinds --------------------------------------------------------------------------

U8, U32, U64 = "B", "I", "Q"


class _Str(NamedTuple):
    """Octet String, NUL-padded on the right: a str of code points 1..255, one byte each
    (latin-1), so that any field a peer sent (ASCII, or GBK bytes in a Service_Id) encodes back
    to the very bytes it was decoded from."""
    width: int


class _Raw(NamedTuple):
    """Binary field that must be exactly `width` bytes (authenticators)."""
    width: int


class _ByVersion(NamedTuple):
    """Kind in 2.x and in 3.0; None where the field does not exist in that version."""
    v2: object
    v3: object


_STATUS = _ByVersion(U8, U32)  # every Status/Result field: 1 byte in 2.x, 4 in 3.0
_NUMBER = _ByVersion(_Str(21), _Str(32))  # terminal numbers; Dest_Id and Src_Id stay 21
_V3_ONLY_U8 = _ByVersion(None, U8)
_LINK_WIDTH = (8, 20)  # 2.x Reserve / 3.0 LinkID, the last field of SUBMIT and DELIVER
_HEADER = struct.Struct(">III")


def _ascii(value, width: int, name: str) -> bytes:
    """An octet-string field's bytes. ASCII is what the protocol means; code points 0x80-0xff
    stand for the bytes of the same value (latin-1, as `_cstr` decodes them), so whatever was
    decoded encodes back to the same bytes. Other characters have no byte: refused."""
    if not isinstance(value, str):
        raise CmppEncodeError(f"{name} must be str, not {type(value).__name__}")
    # NUL is the padding byte: a string containing one would not survive decoding
    if "\0" in value:
        raise CmppEncodeError(f"{name} must be ASCII without NUL: {value!r}")
    try:
        data = value.encode("latin-1")
    except UnicodeEncodeError:
        raise CmppEncodeError(f"{name} must be ASCII without NUL (or bytes 0x80-0xff as the "
                              f"latin-1 characters they decode to): {value!r}") from None
    if len(data) > width:
        raise CmppEncodeError(
            f"{name} has {len(value)} characters, its field holds {width}: {value!r}")
    return data


def _cstr(raw: bytes) -> str:
    # Cut at the first NUL, not just trailing ones: C peers leave stack garbage after the
    # terminator. latin-1 maps every byte, so a decode never fails on non-ASCII junk (and
    # `_ascii` encodes it back to the same bytes); the policy layer decides whether such a
    # field is acceptable.
    # (Inlined in _Layout.unpack and _decode_submit, which are on the hot path.)
    return raw.partition(b"\0")[0].decode("latin-1")


class _Layout:
    """A fixed-size run of packet fields for one protocol version, compiled to one Struct.

    `head` and `tail` are struct codes for values that are not packet fields (the header,
    DestUsr_tl, Msg_Length); the caller supplies them when packing and gets `tail` back last
    when unpacking.
    """

    def __init__(self, cls: type, spec: list, v3: bool, head: str = "", tail: str = ""):
        defaults = {f.name: f.default for f in fields(cls)}
        fmt, names = [], []
        self.strs, self.raws, self.ints, self.absent = [], [], [], []
        for arg, (name, kind) in enumerate(spec):
            if isinstance(kind, _ByVersion):
                kind = kind.v3 if v3 else kind.v2
            qualified = f"{cls.__name__}.{name}"
            if kind is None:
                self.absent.append((arg, name, defaults[name], qualified))
                continue
            if isinstance(kind, _Str):
                self.strs.append((len(names), kind.width, qualified))
                fmt.append(f"{kind.width}s")
            elif isinstance(kind, _Raw):
                self.raws.append((len(names), kind.width, qualified))
                fmt.append(f"{kind.width}s")
            else:
                self.ints.append((name, kind))
                fmt.append(kind)
            names.append(name)
        self.cls = cls
        if len(names) > 1:
            self.getter = attrgetter(*names)
        elif names:
            one = attrgetter(names[0])
            self.getter = lambda packet: (one(packet),)
        else:
            self.getter = lambda packet: ()
        self.packer = struct.Struct(">" + head + "".join(fmt) + tail)
        self.unpacker = struct.Struct(">" + "".join(fmt) + tail)

    def pack(self, packet, head=(), tail=()) -> bytes:
        values = list(self.getter(packet))
        for i, width, name in self.strs:
            value = values[i]
            # the common case inline (hot path); _ascii explains what is wrong otherwise
            if (type(value) is str and len(value) <= width and value.isascii()
                    and "\0" not in value):
                values[i] = value.encode("ascii")
            else:
                values[i] = _ascii(value, width, name)
        for i, width, name in self.raws:
            if not isinstance(values[i], bytes) or len(values[i]) != width:
                raise CmppEncodeError(f"{name} must be exactly {width} bytes, got {values[i]!r}")
        for _, name, default, qualified in self.absent:
            value = getattr(packet, name)
            if value != default:
                raise CmppEncodeError(f"{qualified}={value!r} exists only in CMPP 3.0")
        try:
            return self.packer.pack(*head, *values, *tail)
        except struct.error:
            raise self._int_error(packet) from None

    def _int_error(self, packet) -> CmppEncodeError:
        for name, code in [("sequence_id", U32), *self.ints]:
            value, bits = getattr(packet, name), struct.calcsize(code) * 8
            if not isinstance(value, int) or not 0 <= value < 1 << bits:
                return CmppEncodeError(
                    f"{self.cls.__name__}.{name}={value!r} is not an unsigned {bits}-bit integer")
        return CmppEncodeError(f"{self.cls.__name__}: value out of range")  # head/tail: our bug

    def unpack(self, frame: bytes, offset: int) -> list:
        values = list(self.unpacker.unpack_from(frame, offset))
        for i, _, _ in self.strs:
            values[i] = values[i].partition(b"\0")[0].decode("latin-1")  # _cstr
        for arg, _, default, _ in self.absent:
            values.insert(arg, default)
        return values


def _layouts(cls, spec, **kw) -> tuple[_Layout, _Layout]:
    """(2.x layout, 3.0 layout), indexable by `is_v3(version)`."""
    return _Layout(cls, spec, False, **kw), _Layout(cls, spec, True, **kw)


def _error(cmd: int, seq: int, message: str) -> CmppDecodeError:
    return CmppDecodeError(f"{c.command_name(cmd)} (Sequence_Id {seq}): {message}", seq, cmd)


def _version_name(v3: bool) -> str:
    return "3.0" if v3 else "2.x"


# ---- fixed-size packets -------------------------------------------------------------------

_FIXED = {
    Connect: (c.CONNECT, [("source_addr", _Str(6)), ("authenticator_source", _Raw(16)),
                          ("version", U8), ("timestamp", U32)]),
    ConnectResp: (c.CONNECT_RESP, [("status", _STATUS), ("authenticator_ismg", _Raw(16)),
                                   ("version", U8)]),
    Terminate: (c.TERMINATE, []),
    TerminateResp: (c.TERMINATE_RESP, []),
    SubmitResp: (c.SUBMIT_RESP, [("msg_id", U64), ("result", _STATUS)]),
    DeliverResp: (c.DELIVER_RESP, [("msg_id", U64), ("result", _STATUS)]),
    ActiveTest: (c.ACTIVE_TEST, []),
    ActiveTestResp: (c.ACTIVE_TEST_RESP, [("reserved", U8)]),
    Query: (c.QUERY, [("time", _Str(8)), ("query_type", U8), ("query_code", _Str(10)),
                      ("reserve", _Str(8))]),
    QueryResp: (c.QUERY_RESP, [("time", _Str(8)), ("query_type", U8), ("query_code", _Str(10)),
                               *[(n, U32) for n in ("mt_tlmsg", "mt_tlusr", "mt_scs", "mt_wt",
                                                    "mt_fl", "mo_scs", "mo_wt", "mo_fl")]]),
    Cancel: (c.CANCEL, [("msg_id", U64)]),
    CancelResp: (c.CANCEL_RESP, [("success_id", _STATUS)]),
}


def _encode_fixed(cmd, layouts, packet, v3) -> bytes:
    layout = layouts[v3]
    return layout.pack(packet, (c.HEADER_SIZE + layout.unpacker.size, cmd, packet.sequence_id))


def _decode_fixed(layouts, frame, cmd, seq, v3):
    layout = layouts[v3]
    expected = c.HEADER_SIZE + layout.unpacker.size
    if len(frame) != expected:
        raise _error(cmd, seq, f"Total_Length {len(frame)}, but this command is {expected} bytes "
                               f"in CMPP {_version_name(v3)}")
    return layout.cls(seq, *layout.unpack(frame, c.HEADER_SIZE))


# ---- SUBMIT and DELIVER: recipient list, Msg_Content and Reserve/LinkID vary in size --------

_SUBMIT_HEAD = _layouts(Submit, [
    ("msg_id", U64), ("pk_total", U8), ("pk_number", U8), ("registered_delivery", U8),
    ("msg_level", U8), ("service_id", _Str(10)), ("fee_user_type", U8),
    ("fee_terminal_id", _NUMBER), ("fee_terminal_type", _V3_ONLY_U8), ("tp_pid", U8),
    ("tp_udhi", U8), ("msg_fmt", U8), ("msg_src", _Str(6)), ("fee_type", _Str(2)),
    ("fee_code", _Str(6)), ("valid_time", _Str(17)), ("at_time", _Str(17)), ("src_id", _Str(21)),
], head="III", tail="B")  # tail: DestUsr_tl
_SUBMIT_MID = _layouts(Submit, [("dest_terminal_type", _V3_ONLY_U8)], tail="B")  # tail: Msg_Length
_DELIVER_HEAD = _layouts(Deliver, [
    ("msg_id", U64), ("dest_id", _Str(21)), ("service_id", _Str(10)), ("tp_pid", U8),
    ("tp_udhi", U8), ("msg_fmt", U8), ("src_terminal_id", _NUMBER),
    ("src_terminal_type", _V3_ONLY_U8), ("registered_delivery", U8),
], head="III", tail="B")  # tail: Msg_Length


def _content(packet) -> bytes:
    content = packet.msg_content
    if not isinstance(content, bytes):
        raise CmppEncodeError(f"{type(packet).__name__}.msg_content must be bytes, "
                              f"not {type(content).__name__}")
    if len(content) > 255:  # Msg_Length is one byte
        raise CmppEncodeError(f"{type(packet).__name__}.msg_content has {len(content)} bytes, "
                              f"at most 255 fit")
    return content


def _link(packet, v3: bool) -> bytes:
    width = _LINK_WIDTH[v3]
    name = f"{type(packet).__name__}.link_id"
    return _ascii(packet.link_id, width, name).ljust(width, b"\0")


def _encode_submit(packet: Submit, v3: bool) -> bytes:
    dests = packet.dest_terminal_ids
    # a bare str would be iterated character by character
    if not isinstance(dests, (tuple, list)):
        raise CmppEncodeError(f"Submit.dest_terminal_ids must be a tuple of str, "
                              f"not {type(dests).__name__}")
    if len(dests) > 255:
        raise CmppEncodeError(f"Submit has {len(dests)} recipients, DestUsr_tl holds at most 255")
    width = _NUMBER[v3].width
    dest_bytes = b"".join([_ascii(d, width, "Submit.dest_terminal_ids").ljust(width, b"\0")
                           for d in dests])
    content = _content(packet)
    mid = _SUBMIT_MID[v3].pack(packet, tail=(len(content),))
    link = _link(packet, v3)
    head_layout = _SUBMIT_HEAD[v3]
    total = head_layout.packer.size + len(dest_bytes) + len(mid) + len(content) + len(link)
    head = head_layout.pack(packet, (total, c.SUBMIT, packet.sequence_id), (len(dests),))
    return b"".join((head, dest_bytes, mid, content, link))


def _decode_submit(frame: bytes, cmd: int, seq: int, v3: bool) -> Submit:
    head = _SUBMIT_HEAD[v3]
    size, pos = len(frame), head.packer.size
    if size < pos:
        raise _error(cmd, seq, f"truncated: {size} bytes, the fixed part of a CMPP "
                               f"{_version_name(v3)} SUBMIT needs {pos}")
    values = head.unpack(frame, c.HEADER_SIZE)
    count = values.pop()
    width = _NUMBER[v3].width
    dests_end = pos + count * width
    mid = _SUBMIT_MID[v3]
    content_pos = dests_end + mid.unpacker.size
    if content_pos > size:
        raise _error(cmd, seq, f"DestUsr_tl={count} needs at least {content_pos} bytes, "
                               f"frame has {size}")
    dest_type, length = mid.unpack(frame, dests_end)
    link_pos = content_pos + length
    if link_pos + _LINK_WIDTH[v3] != size:
        raise _error(cmd, seq, f"Total_Length {size} does not match DestUsr_tl={count} and "
                               f"Msg_Length={length} (expected {link_pos + _LINK_WIDTH[v3]})")
    dests = tuple([frame[i:i + width].partition(b"\0")[0].decode("latin-1")  # _cstr
                   for i in range(pos, dests_end, width)])
    return Submit(seq, *values, dests, dest_type, frame[content_pos:link_pos],
                  _cstr(frame[link_pos:]))


def _encode_deliver(packet: Deliver, v3: bool) -> bytes:
    content = _content(packet)
    link = _link(packet, v3)
    head_layout = _DELIVER_HEAD[v3]
    total = head_layout.packer.size + len(content) + len(link)
    head = head_layout.pack(packet, (total, c.DELIVER, packet.sequence_id), (len(content),))
    return b"".join((head, content, link))


def _decode_deliver(frame: bytes, cmd: int, seq: int, v3: bool) -> Deliver:
    head = _DELIVER_HEAD[v3]
    size, pos = len(frame), head.packer.size
    if size < pos:
        raise _error(cmd, seq, f"truncated: {size} bytes, the fixed part of a CMPP "
                               f"{_version_name(v3)} DELIVER needs {pos}")
    values = head.unpack(frame, c.HEADER_SIZE)
    length = values.pop()
    link_pos = pos + length
    if link_pos + _LINK_WIDTH[v3] != size:
        raise _error(cmd, seq, f"Total_Length {size} does not match Msg_Length={length} "
                               f"(expected {link_pos + _LINK_WIDTH[v3]})")
    return Deliver(seq, *values, frame[pos:link_pos], _cstr(frame[link_pos:]))


_FIXED_LAYOUTS = {cls: (cmd, _layouts(cls, spec, head="III"))
                  for cls, (cmd, spec) in _FIXED.items()}
_ENCODERS = {cls: partial(_encode_fixed, cmd, layouts)
             for cls, (cmd, layouts) in _FIXED_LAYOUTS.items()}
_ENCODERS.update({Submit: _encode_submit, Deliver: _encode_deliver})
_DECODERS = {cmd: partial(_decode_fixed, layouts) for cmd, layouts in _FIXED_LAYOUTS.values()}
_DECODERS.update({c.SUBMIT: _decode_submit, c.DELIVER: _decode_deliver})


# ---- public API ---------------------------------------------------------------------------

def encode(packet: Packet, version: int) -> bytes:
    """The complete frame (header included) for `packet` in protocol `version`."""
    try:
        v3 = c.is_v3(version)
    except ValueError as e:
        raise CmppEncodeError(str(e)) from None
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise CmppEncodeError(f"not a CMPP packet: {type(packet).__name__}")
    return encoder(packet, v3)


def _header(frame) -> tuple[bytes, int, int]:
    if type(frame) is not bytes:
        if not isinstance(frame, (bytes, bytearray, memoryview)):
            raise TypeError(f"frame must be bytes, not {type(frame).__name__}")
        frame = bytes(frame)  # bytearray/memoryview from a receive buffer
    if len(frame) < c.HEADER_SIZE:
        raise CmppDecodeError(f"truncated: {len(frame)} bytes, the CMPP header alone is 12")
    total, cmd, seq = _HEADER.unpack_from(frame)
    if total != len(frame):
        raise _error(cmd, seq, f"Total_Length says {total} bytes, frame has {len(frame)}")
    return frame, cmd, seq


def decode(frame: bytes, version: int) -> Packet:
    """Decode one whole frame (Total_Length must equal len(frame)) in protocol `version`."""
    try:
        v3 = c.is_v3(version)
    except ValueError as e:
        raise CmppDecodeError(str(e)) from None
    frame, cmd, seq = _header(frame)
    decoder = _DECODERS.get(cmd)
    if decoder is None:
        raise _error(cmd, seq, "command not supported on an SP link")
    return decoder(frame, cmd, seq, v3)


def decode_connect(frame: bytes) -> Connect:
    """Decode the CONNECT a server receives before it knows the peer's version.

    CONNECT has the same layout in every version; anything else before it is an error.
    """
    frame, cmd, seq = _header(frame)
    if cmd != c.CONNECT:
        raise _error(cmd, seq, "expected CMPP_CONNECT before any other command")
    return _DECODERS[c.CONNECT](frame, cmd, seq, False)


class Framer:
    """Cuts a TCP byte stream into packets, across arbitrary splits.

    Leave `version` as None on a server until CONNECT arrived (only CONNECT is decoded then),
    and set it to the negotiated version afterwards.

    A bad body raises CmppDecodeError for that frame only and the stream continues with the
    next one. A bad Total_Length means the stream cannot be resynchronised: the header stays in
    the buffer, every later call raises again, and the connection has to be closed.
    """

    def __init__(self, version: int | None = None,
                 max_packet_size: int = c.DEFAULT_MAX_PACKET_SIZE):
        if max_packet_size < c.HEADER_SIZE:
            raise ValueError(f"max_packet_size {max_packet_size} is below the 12-byte header")
        self.version = version
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()

    @property
    def version(self) -> int | None:
        return self._version

    @version.setter
    def version(self, version: int | None) -> None:
        if version is not None:
            c.is_v3(version)  # reject an unusable version now, not on the next packet
        self._version = version

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None until more data is fed."""
        buffer = self._buffer
        if len(buffer) < c.HEADER_SIZE:
            return None
        total, cmd, seq = _HEADER.unpack_from(buffer)
        if not c.HEADER_SIZE <= total <= self.max_packet_size:
            raise _error(cmd, seq, f"Total_Length {total} outside 12..{self.max_packet_size}; "
                                   f"the stream cannot be resynchronised")
        if len(buffer) < total:
            return None
        frame = bytes(buffer[:total])
        del buffer[:total]  # cheap: bytearray drops a prefix without moving the rest
        if self._version is None:
            return decode_connect(frame)
        return decode(frame, self._version)

    def __iter__(self) -> Iterator[Packet]:
        while (packet := self.next_packet()) is not None:
            yield packet
