"""The segment database: 7-digit number segment -> province, city and carrier.

Source: the `phone` package's phone.dat (or a newer file in the same format), optionally
overridden by an operator's CSV. phone.dat layout, from phone/phone.py:

    header   "<4si": version (4 ASCII bytes, e.g. b"2312"), offset of the first index record
    records  NUL-terminated UTF-8 strings "province|city|zip|area_code", from byte 8 on
    index    "<iiB" * n from that offset to the end, sorted by segment:
             segment (int, 7 digits), offset of its record string, carrier type (1..8)

All of it is decoded once at load into one array of small ints indexed by segment (2 MB for the
whole 1000000..1999999 range) and a short table of distinct SegmentInfo values; a lookup is an
int() and two indexings, with no per-call allocation.

Segments missing from the database: `assigned` is False (that is what MA:0014, 非法的OP_ISDN号段,
means here: the segment is not in the segment database), province and city are '' and the
carrier comes from libphonenumber's carrier prefixes when it knows them (e.g. new 19x ranges),
else 'unknown'. libphonenumber's CN carrier prefixes are at most 4 digits after 86, so resolving
them once per segment and caching the answer is exact.
"""
from __future__ import annotations

import csv
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

from phonenumbers import PhoneNumber, carrier as pn_carrier

from .numbers import SEGMENT_BASE, SEGMENT_COUNT

CARRIERS = ("cmcc", "cucc", "ctcc", "cbn")
UNKNOWN = "unknown"

# phone.dat carrier type -> carrier; virtual operators (虚拟运营商) ride on the named network.
_DAT_CARRIERS = {
    1: "cmcc",  # 移动
    2: "cucc",  # 联通
    3: "ctcc",  # 电信
    4: "ctcc",  # 电信虚拟运营商
    5: "cucc",  # 联通虚拟运营商
    6: "cmcc",  # 移动虚拟运营商
    7: "cbn",   # 广电
    8: "cbn",   # 广电虚拟运营商
}
_PN_CARRIERS = {
    "China Mobile": "cmcc",
    "China Unicom": "cucc",
    "China Telecom": "ctcc",
    "China Broadnet": "cbn",
}
# Carrier words accepted in an override CSV, besides the codes themselves.
_CSV_CARRIERS = {
    "移动": "cmcc", "中国移动": "cmcc", "联通": "cucc", "中国联通": "cucc",
    "电信": "ctcc", "中国电信": "ctcc", "广电": "cbn", "中国广电": "cbn",
    **{c: c for c in (*CARRIERS, UNKNOWN)},
}

# Operators write regions the way official names read; phone.dat uses the short forms.
_LONG_REGIONS = {
    "内蒙古自治区": "内蒙古", "广西壮族自治区": "广西", "西藏自治区": "西藏",
    "宁夏回族自治区": "宁夏", "新疆维吾尔自治区": "新疆",
}


def canonical_region(name: str) -> str:
    """'广东省' -> '广东', '深圳市' -> '深圳', '广西壮族自治区' -> '广西'; short names unchanged."""
    name = name.strip()
    if name in _LONG_REGIONS:
        return _LONG_REGIONS[name]
    if len(name) > 2 and name[-1] in "省市":
        return name[:-1]
    return name


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    province: str
    city: str
    carrier: str      # cmcc | cucc | ctcc | cbn | unknown
    assigned: bool    # the segment is in the segment database


NOT_A_SEGMENT = SegmentInfo("", "", UNKNOWN, False)
_UNASSIGNED = {c: SegmentInfo("", "", c, False) for c in (*CARRIERS, UNKNOWN)}
# Every database starts its info table with these, so their positions are fixed. Position 0
# marks "not resolved yet" in the index, so it holds a placeholder that no lookup returns.
_FIXED_INFOS = (NOT_A_SEGMENT, *_UNASSIGNED.values())
_UNASSIGNED_POS = {c: pos for pos, c in enumerate(_UNASSIGNED, 1)}


class SegmentDB:
    def __init__(self, index: array, infos: list[SegmentInfo], version: str, source: str):
        # index[segment - SEGMENT_BASE]: 0 = not resolved yet, else a position in infos
        self._index = index
        self._infos = infos
        self.version = version
        self.source = source
        # at load only database rows are set; unassigned segments are filled in by lookups
        self.assigned_count = SEGMENT_COUNT - index.count(0)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: str | Path | None = None) -> "SegmentDB":
        """phone.dat from `path` (default: the one shipped in the `phone` package), then the
        rows of the `overrides` CSV (segment,province,city,carrier) on top."""
        if path is None:
            import phone
            path = Path(phone.__file__).with_name("phone.dat")
        path = Path(path)
        infos: list[SegmentInfo] = list(_FIXED_INFOS)
        positions = {info: i for i, info in enumerate(infos)}
        index = array("H", bytes(2 * SEGMENT_COUNT))
        version = _read_dat(path, index, infos, positions)
        source = str(path)
        if overrides is not None:
            _read_overrides(Path(overrides), index, infos, positions)
            source += f" + {overrides}"
        return cls(index, infos, version, source)

    def lookup(self, number: str) -> SegmentInfo:
        """Info of the number's segment (its first 7 digits); NOT_A_SEGMENT when it has none."""
        seg = number[:7]
        if len(seg) != 7 or seg[0] != "1" or not (seg.isdigit() and seg.isascii()):
            return NOT_A_SEGMENT
        i = int(seg) - SEGMENT_BASE
        pos = self._index[i]
        if pos == 0:
            pos = self._index[i] = _UNASSIGNED_POS[_phonenumbers_carrier(seg)]
        return self._infos[pos]

    def assigned_segments(self) -> list[str]:
        return [str(SEGMENT_BASE + i) for i, pos in enumerate(self._index)
                if pos and self._infos[pos].assigned]

    def __len__(self) -> int:
        return self.assigned_count


def _intern(info: SegmentInfo, infos: list[SegmentInfo], positions: dict[SegmentInfo, int]) -> int:
    pos = positions.get(info)
    if pos is None:
        if len(infos) >= 0xFFFF:
            raise ValueError("segment database has more than 65534 distinct province/city/carrier values")
        pos = positions[info] = len(infos)
        infos.append(info)
    return pos


def _read_dat(path: Path, index: array, infos: list[SegmentInfo], positions: dict) -> str:
    buf = path.read_bytes()
    head = struct.calcsize("<4si")
    rec = struct.calcsize("<iiB")
    if len(buf) < head:
        raise ValueError(f"{path}: not a phone.dat file (only {len(buf)} bytes)")
    version, first = struct.unpack_from("<4si", buf, 0)
    if not head <= first <= len(buf) or (len(buf) - first) % rec:
        raise ValueError(f"{path}: not a phone.dat file (index offset {first}, size {len(buf)})")
    # ~500k index records share a few hundred (record, carrier type) pairs: resolve each pair once
    pair_pos: dict[tuple[int, int], int] = {}
    for seg, offset, kind in struct.iter_unpack("<iiB", memoryview(buf)[first:]):
        pos = pair_pos.get((offset, kind))
        if pos is None:
            end = buf.find(b"\x00", offset, first)
            if not head <= offset < end:
                raise ValueError(f"{path}: segment {seg} points outside the record area ({offset})")
            fields = buf[offset:end].decode("utf-8", "replace").split("|")
            if len(fields) < 2:
                raise ValueError(f"{path}: record at {offset} is not 'province|city|zip|area'")
            info = SegmentInfo(fields[0], fields[1], _DAT_CARRIERS.get(kind, UNKNOWN), True)
            pos = pair_pos[(offset, kind)] = _intern(info, infos, positions)
        i = seg - SEGMENT_BASE
        if not 0 <= i < SEGMENT_COUNT:
            raise ValueError(f"{path}: {seg} is not a 7-digit segment starting with 1")
        index[i] = pos
    return version.decode("ascii", "replace")


def _read_overrides(path: Path, index: array, infos: list[SegmentInfo], positions: dict) -> None:
    with path.open(encoding="utf-8-sig", newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if lineno == 1 and row[0].strip().lower() == "segment":
                continue
            if len(row) != 4:
                raise ValueError(f"{path}:{lineno}: expected segment,province,city,carrier, got {len(row)} fields")
            seg, province, city, carrier = (c.strip() for c in row)
            if not (len(seg) == 7 and seg.isdigit() and seg.isascii() and seg[0] == "1"):
                raise ValueError(f"{path}:{lineno}: segment must be 7 digits starting with 1, not {seg!r}")
            code = _CSV_CARRIERS.get(carrier.lower() if carrier.isascii() else carrier)
            if code is None:
                raise ValueError(f"{path}:{lineno}: unknown carrier {carrier!r} "
                                 f"(use one of {', '.join((*CARRIERS, UNKNOWN))} or 移动/联通/电信/广电)")
            info = SegmentInfo(canonical_region(province), canonical_region(city), code, True)
            index[int(seg) - SEGMENT_BASE] = _intern(info, infos, positions)


def _phonenumbers_carrier(segment: str) -> str:
    n = PhoneNumber(country_code=86, national_number=int(segment + "0000"))
    return _PN_CARRIERS.get(pn_carrier.name_for_number(n, "en"), UNKNOWN)
