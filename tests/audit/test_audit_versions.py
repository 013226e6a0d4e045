"""The content-addressed store of rules versions."""
from __future__ import annotations

import sqlite3

import pytest

from policy.audit.versions import VersionConflictError, VersionStore

V1 = {"accounts.yaml": b"accounts: []\n", "rules/blacklist.yaml": b"rules: []\n", "lists/vip.txt": b"138\n"}
V2 = {**V1, "rules/blacklist.yaml": b"rules: [x]\n"}


@pytest.fixture
def store(tmp_path):
    return VersionStore(str(tmp_path / "versions.db"))


def test_put_get_roundtrip_and_list(store):
    store.put("sha-1", V1)
    store.put("sha-2", V2)
    assert store.get("sha-1") == V1
    assert store.get("sha-2") == V2
    listed = store.list()
    assert [(v, n) for v, _, n in listed] == [("sha-1", 3), ("sha-2", 3)]
    assert listed[0][1] <= listed[1][1]


def test_put_is_idempotent_and_keeps_first_seen(store):
    store.put("sha-1", V1)
    first_seen = store.list()[0][1]
    store.put("sha-1", dict(V1))
    assert store.list() == [("sha-1", first_seen, 3)]


def test_same_id_with_other_files_is_refused(store):
    store.put("sha-1", V1)
    with pytest.raises(VersionConflictError, match="sha-1"):
        store.put("sha-1", V2)
    assert store.get("sha-1") == V1


def test_identical_contents_are_stored_once(store, tmp_path):
    store.put("sha-1", V1)
    store.put("sha-2", V2)
    blobs = sqlite3.connect(str(tmp_path / "versions.db")).execute("SELECT count(*) FROM blobs").fetchone()[0]
    assert blobs == 4


def test_unknown_version(store):
    with pytest.raises(KeyError, match="nope"):
        store.get("nope")


def test_materialize_writes_a_loadable_folder(store, tmp_path):
    store.put("sha-1", V1)
    dest = store.materialize("sha-1", str(tmp_path / "out" / "sha-1"))
    assert dest == str(tmp_path / "out" / "sha-1")
    written = {p.relative_to(dest).as_posix(): p.read_bytes()
               for p in (tmp_path / "out" / "sha-1").rglob("*") if p.is_file()}
    assert written == V1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["sha-1"]   # no staging left behind


def test_materialize_refuses_a_folder_with_other_files(store, tmp_path):
    store.put("sha-1", V1)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "stale.yaml").write_text("x")
    with pytest.raises(FileExistsError):
        store.materialize("sha-1", str(tmp_path / "busy"))
    (tmp_path / "empty").mkdir()
    store.materialize("sha-1", str(tmp_path / "empty"))
    assert (tmp_path / "empty" / "lists" / "vip.txt").read_bytes() == b"138\n"


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.yaml", "rules/../../x", "", "a\\b.yaml", "./a.yaml"])
def test_file_names_cannot_escape_the_folder(store, name):
    with pytest.raises(ValueError, match="relative path"):
        store.put("sha-x", {name: b"x"})


def test_damaged_content_is_detected(store, tmp_path):
    store.put("sha-1", V1)
    sqlite3.connect(str(tmp_path / "versions.db"), isolation_level=None).execute(
        "UPDATE blobs SET data = x'00'")
    with pytest.raises(ValueError, match="damaged"):
        store.get("sha-1")
