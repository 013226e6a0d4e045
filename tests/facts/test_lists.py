import threading
import time
import uuid

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


@pytest.fixture(params=["sqlite", "redis"])
def open_blacklist(request, tmp_path):
    """A callable opening the API blacklist on one storage: the daemon's own SQLite file, or
    the Redis that daemons sharing counters share (each call: a new daemon on it)."""
    opened = []
    if request.param == "sqlite":
        def make():
            opened.append(ApiBlacklist(tmp_path / "sub" / "api.db"))
            return opened[-1]
    else:
        from policy.facts.redis_api_blacklist import RedisApiBlacklist
        url, prefix = request.getfixturevalue("redis_url"), f"t{uuid.uuid4().hex[:8]}:"

        def make():
            opened.append(RedisApiBlacklist(url, prefix=prefix, refresh_seconds=0.1))
            return opened[-1]
    yield make
    for bl in opened:
        bl.close()


def test_api_blacklist_add_remove_persist(open_blacklist):
    bl = open_blacklist()
    assert bl.add(["+8613800138000", "13900000001", "13900000001"]) == 2
    assert bl.add(["13800138000"]) == 0
    assert bl.contains("13800138000") and bl.size == 2
    assert bl.remove(["13900000001", "13600000000"]) == 1
    assert not bl.contains("13900000001")
    bl.close()
    reopened = open_blacklist()
    assert reopened.contains("13800138000") and reopened.size == 1


def test_api_blacklist_refuses_non_numbers(open_blacklist):
    bl = open_blacklist()
    with pytest.raises(ValueError, match="not phone numbers: 'abc'"):
        bl.add(["13800138000", "abc"])
    assert bl.size == 0  # all or nothing
    assert open_blacklist().size == 0


def test_seed_adds_each_list_entry_once_ever(open_blacklist):
    bl = open_blacklist()
    assert bl.seed({"api": ["13800138000", "13900000001"]}) == 2
    bl.remove(["13800138000"])                      # an operator lifts one
    assert bl.seed({"api": ["13800138000", "13900000001", "13700000000"]}) == 1  # policy reload
    assert not bl.contains("13800138000") and bl.contains("13700000000")
    bl.close()
    again = open_blacklist()                        # and across restarts
    assert again.seed({"api": ["13800138000"]}) == 0
    again.add(["13500000000"])
    assert again.seed({"api2": ["13500000000"]}) == 0  # already listed through the API
    assert not again.contains("13800138000")


def test_api_blacklist_concurrent_writers(open_blacklist):
    bl = open_blacklist()
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
    assert open_blacklist().size == 200


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_change_through_one_daemon_reaches_the_others(kind, tmp_path, request):
    """Daemons on one data folder share the file, daemons on one Redis the set there."""
    if kind == "sqlite":
        def make(every):
            return ApiBlacklist(tmp_path / "api.db", refresh_seconds=every)
    else:
        from policy.facts.redis_api_blacklist import RedisApiBlacklist
        url, prefix = request.getfixturevalue("redis_url"), f"t{uuid.uuid4().hex[:8]}:"

        def make(every):
            return RedisApiBlacklist(url, prefix=prefix, refresh_seconds=every)
    one, two = make(3600), make(0.05)   # one refreshed by hand, two by its thread
    try:
        one.add(["13800138000"])
        deadline = time.monotonic() + 5
        while not two.contains("13800138000") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert two.contains("13800138000")
        two.remove(["13800138000"])
        two.add(["13900000001"])
        assert one.contains("13800138000") and not one.contains("13900000001")  # not refreshed yet
        assert one.refresh()
        assert not one.contains("13800138000") and one.contains("13900000001")
        assert not one.refresh()                    # nothing changed since: no read
    finally:
        one.close()
        two.close()


def test_redis_changes_are_applied_one_by_one_and_a_daemon_far_behind_reads_the_set(redis_url, monkeypatch):
    from policy.facts import redis_api_blacklist as rab
    monkeypatch.setattr(rab, "KEEP_CHANGES", 3)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    one, two = (rab.RedisApiBlacklist(redis_url, prefix=prefix, refresh_seconds=3600) for _ in range(2))
    try:
        one.add(["13800000001"])
        one.remove(["13800000001"])
        one.add(["13800000002", "13800000003"])
        assert two.refresh() == "changes"           # three changes, all kept: applied in order
        assert not two.contains("13800000001") and two.contains("13800000002") and two.size == 2
        for i in range(4):                          # four more: the first is no longer kept
            one.add([f"1390000000{i}"])
        assert two.refresh() == "set"
        assert two.size == 6 and two.contains("13900000000")
        assert two.refresh() == ""
        one.add(["13800000002"])                    # already listed: no change to pass on
        one.remove(["13700000000"])                 # not listed: none either
        assert two.refresh() == ""
        one.remove(["13800000002"])
        assert two.refresh() == "changes" and not two.contains("13800000002")
    finally:
        one.close()
        two.close()


def test_sqlite_changes_are_applied_one_by_one_and_a_daemon_far_behind_reads_the_list(tmp_path, monkeypatch):
    from policy.facts import lists
    monkeypatch.setattr(lists, "KEEP_CHANGES", 3)
    one, two = (ApiBlacklist(tmp_path / "api.db") for _ in range(2))
    try:
        one.add(["13800000001"])
        one.remove(["13800000001"])
        one.add(["13800000002"])
        assert two.refresh() == "changes"           # three numbers changed, all kept: in order
        assert not two.contains("13800000001") and two.contains("13800000002") and two.size == 1
        two.remove(["13800000002"])                 # decided against the file, not two's set:
        assert one.remove(["13800000002"]) == 0     # one has not seen it yet, and is told so
        one.add(["13900000000", "13900000001", "13900000002", "13900000003"])   # more than kept
        assert two.refresh() == "set"
        assert two.size == 4 and not two.contains("13800000002")
        assert two.refresh() == ""
        assert one.add(["13900000000"]) == 0 and two.refresh() == ""   # nothing changed
    finally:
        one.close()
        two.close()
