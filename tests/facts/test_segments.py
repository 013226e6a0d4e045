import struct

import pytest

from policy.facts.segments import SegmentDB, SegmentInfo, canonical_region


def test_shipped_database_is_loaded_whole(segment_db):
    assert len(segment_db) == 499_527  # every index record of the shipped phone.dat (2312)
    assert segment_db.version == "2312"


@pytest.mark.parametrize("number, info", [
    ("13800138000", SegmentInfo("北京", "北京", "cmcc", True)),
    ("1300000", SegmentInfo("山东", "济南", "cucc", True)),
    ("13300001234", SegmentInfo("广西", "南宁", "ctcc", True)),
    ("19200001234", SegmentInfo("广东", "佛山", "cbn", True)),     # 广电
    ("16210241234", SegmentInfo("天津", "天津", "ctcc", True)),    # 电信虚拟运营商
    ("16710071234", SegmentInfo("北京", "北京", "cucc", True)),    # 联通虚拟运营商
    ("13490001234", SegmentInfo("北京", "北京", "cmcc", True)),    # 移动虚拟运营商
])
def test_lookup(segment_db, number, info):
    assert segment_db.lookup(number) == info


@pytest.mark.parametrize("number, carrier", [
    ("19000001234", "ctcc"), ("19208921234", "cbn"), ("19600201234", "cucc"),
    ("19700451234", "cmcc"), ("16200001234", "unknown"),
])
def test_missing_segment_is_unassigned_with_carrier_from_phonenumbers(segment_db, number, carrier):
    assert segment_db.lookup(number) == SegmentInfo("", "", carrier, False)
    assert segment_db.lookup(number) == SegmentInfo("", "", carrier, False)  # cached answer


def test_phonenumbers_is_asked_once_per_segment(monkeypatch):
    from policy.facts import segments
    calls = []
    real = segments._phonenumbers_carrier
    monkeypatch.setattr(segments, "_phonenumbers_carrier", lambda seg: calls.append(seg) or real(seg))
    db = SegmentDB.load()
    for number in ["16200001234", "16200005678", "19000001234", "19000009999"]:
        db.lookup(number)
    assert calls == ["1620000", "1900000"]


@pytest.mark.parametrize("number", ["", "138", "23800138000", "1380a13800", "１３８００１３"])
def test_not_a_segment(segment_db, number):
    assert segment_db.lookup(number) == SegmentInfo("", "", "unknown", False)


def _write_dat(path, rows):
    """A phone.dat in the shipped format: header, NUL-terminated records, sorted index."""
    records = b""
    offsets = {}
    for _, place, _ in rows:
        if place not in offsets:
            offsets[place] = 8 + len(records)
            records += place.encode() + b"\x00"
    first = 8 + len(records)
    index = b"".join(struct.pack("<iiB", seg, offsets[place], kind) for seg, place, kind in sorted(rows))
    path.write_bytes(struct.pack("<4si", b"2501", first) + records + index)


def test_load_a_newer_file_of_the_same_format(tmp_path):
    dat = tmp_path / "phone.dat"
    _write_dat(dat, [(1990000, "海南|三亚|572000|0899", 3), (1380013, "北京|北京|100000|010", 1),
                     (1650000, "上海|上海|200000|021", 5), (1880000, "广东|深圳|518000|0755", 8)])
    db = SegmentDB.load(dat)
    assert (len(db), db.version) == (4, "2501")
    assert db.lookup("19900001234") == SegmentInfo("海南", "三亚", "ctcc", True)
    assert db.lookup("16500001234") == SegmentInfo("上海", "上海", "cucc", True)
    assert db.lookup("18800001234") == SegmentInfo("广东", "深圳", "cbn", True)  # 广电虚拟运营商
    assert not db.lookup("13900001234").assigned


def test_not_a_phone_dat(tmp_path):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"xx")
    with pytest.raises(ValueError, match="not a phone.dat"):
        SegmentDB.load(bad)
    bad.write_bytes(struct.pack("<4si", b"2501", 999) + b"\x00" * 20)
    with pytest.raises(ValueError, match="not a phone.dat"):
        SegmentDB.load(bad)


def test_override_csv(tmp_path):
    csv = tmp_path / "fresh.csv"
    csv.write_text("segment,province,city,carrier\n"
                   "1380013,广东省,深圳市,电信\n"
                   "# a comment\n"
                   "1620000,浙江,杭州,cbn\n", encoding="utf-8")
    db = SegmentDB.load(overrides=csv)
    assert db.lookup("13800138000") == SegmentInfo("广东", "深圳", "ctcc", True)
    assert db.lookup("16200001234") == SegmentInfo("浙江", "杭州", "cbn", True)
    assert len(db) == 499_528


@pytest.mark.parametrize("row, message", [
    ("138001,北京,北京,cmcc", "7 digits"),
    ("1380013,北京,cmcc", "expected segment,province,city,carrier"),
    ("1380013,北京,北京,铁通", "unknown carrier"),
])
def test_override_csv_errors_name_the_line(tmp_path, row, message):
    csv = tmp_path / "bad.csv"
    csv.write_text("1390000,北京,北京,cmcc\n" + row + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message) as e:
        SegmentDB.load(overrides=csv)
    assert f"{csv}:2:" in str(e.value)


def test_canonical_region():
    assert canonical_region("广东省") == "广东"
    assert canonical_region("深圳市") == "深圳"
    assert canonical_region("广西壮族自治区") == "广西"
    assert canonical_region("北京") == "北京"
