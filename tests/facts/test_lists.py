import threading

import pytest

from policy.facts.lists import ApiBlacklist, ListIndex
from policy.facts.numbers import number_key
from policy.rules.model import NumberList


def _nl(id, kind="numbers", scope="global", entries=(), **kw):
    return NumberList(id, kind, scope, entries=frozenset(entries), **kw)


def test_membership_of_a_number_in_several_lists():
    index = ListIndex([
        _nl("g1", entries={"13800138000", "13900000001"}),
        _nl("c1", scope="customer", account="A", entries={"13800138000"}),
        _nl("c2", scope="customer", account="B", entries={"13800138000", "13700000000"}),
        _nl("ch", scope="channel", channel="ch-x", entries={"13800138000"}),
    ])
    m = index.number(number_key("13800138000"))
    assert m.ids == ("c1", "c2", "ch", "g1")
    assert m.is_global and m.accounts == {"A", "B"} and m.channels == {"ch-x"}
    only_b = index.number(number_key("13700000000"))
    assert only_b.ids == ("c2",) and not only_b.is_global and only_b.accounts == {"B"}
    assert index.number(number_key("13600000000")) is None


def test_keys_in_the_same_lists_share_one_membership():
    index = ListIndex([_nl("a", entries={f"1380000{i:04d}" for i in range(100)}),
                       _nl("b", entries={f"1380000{i:04d}" for i in range(50, 150)})])
    assert len({id(m) for m in index.numbers.values()}) == 3  # a, a+b, b


def test_entries_are_normalized():
    index = ListIndex([_nl("g", entries={"+8613800138000"})])
    assert index.number(number_key("13800138000")).ids == ("g",)


def test_segment_prefixes_of_every_length():
    index = ListIndex([
        _nl("s3", "segments", entries={"170"}),
        _nl("s7", "segments", "channel", channel="ch-x", entries={"1700123", "1380013"}),
        _nl("s4", "segments", "customer", account="A", entries={"1700"}),
    ])
    assert index.prefix_lengths == (3, 4, 7)
    assert [m.ids for m in index.segment("17001234567")] == [("s3",), ("s4",), ("s7",)]
    assert [m.ids for m in index.segment("17009999999")] == [("s3",), ("s4",)]
    assert index.segment("13900000000") == []


def test_bad_segment_entry():
    with pytest.raises(ValueError, match="list s: segment entry '13' is not 3 to 7 digits"):
        ListIndex([_nl("s", "segments", entries={"13"})])


def test_entry_files_relative_to_the_rules_folder(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "big.txt").write_text("# blocked\n13800138000\n\n+8613900000001 # dup\n")
    index = ListIndex([_nl("f", entries={"13700000000"}, files=("lists/big.txt",))], tmp_path)
    assert {k for k in index.numbers} == {13800138000, 13900000001, 13700000000}


def test_entry_file_errors_name_list_and_lines(tmp_path):
    (tmp_path / "bad.txt").write_text("13800138000\nnope\n")
    with pytest.raises(ValueError, match=r"list f: .*bad.txt: line\(s\) 2 hold no number"):
        ListIndex([_nl("f", files=("bad.txt",))], tmp_path)
    with pytest.raises(ValueError, match="list f: cannot read entry file"):
        ListIndex([_nl("f", files=("missing.txt",))], tmp_path)


def test_api_lists_are_kept_as_seed():
    index = ListIndex([_nl("api", scope="api", entries={"13800138000"})])
    assert index.api_entries == {"api": ["13800138000"]}
    assert index.number(number_key("13800138000")).ids == ("api",)


def test_api_blacklist_add_remove_persist(tmp_path):
    path = tmp_path / "sub" / "api.db"
    bl = ApiBlacklist(path)
    assert bl.add(["+8613800138000", "13900000001", "13900000001"]) == 2
    assert bl.add(["13800138000"]) == 0
    assert bl.contains("13800138000") and bl.size == 2
    assert bl.remove(["13900000001", "13600000000"]) == 1
    assert not bl.contains("13900000001")
    bl.close()
    reopened = ApiBlacklist(path)
    assert reopened.contains("13800138000") and reopened.size == 1
    reopened.close()


def test_api_blacklist_refuses_non_numbers(tmp_path):
    bl = ApiBlacklist(tmp_path / "api.db")
    with pytest.raises(ValueError, match="not phone numbers: 'abc'"):
        bl.add(["13800138000", "abc"])
    assert bl.size == 0  # all or nothing


def test_seed_adds_each_list_entry_once_ever(tmp_path):
    path = tmp_path / "api.db"
    bl = ApiBlacklist(path)
    assert bl.seed({"api": ["13800138000", "13900000001"]}) == 2
    bl.remove(["13800138000"])                      # an operator lifts one
    assert bl.seed({"api": ["13800138000", "13900000001", "13700000000"]}) == 1  # policy reload
    assert not bl.contains("13800138000") and bl.contains("13700000000")
    bl.close()
    again = ApiBlacklist(path)                      # and across restarts
    assert again.seed({"api": ["13800138000"]}) == 0
    again.add(["13500000000"])
    assert again.seed({"api2": ["13500000000"]}) == 0  # already listed through the API
    assert not again.contains("13800138000")
    again.close()


def test_api_blacklist_concurrent_writers(tmp_path):
    bl = ApiBlacklist(tmp_path / "api.db")
    def worker(base):
        for i in range(50):
            bl.add([f"138{base:04d}{i:04d}"])
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bl.size == 200
    bl.close()
    assert ApiBlacklist(tmp_path / "api.db").size == 200
