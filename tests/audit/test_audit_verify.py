"""Tampering with a log through raw SQL is reported at the right record, with the right kind."""
from __future__ import annotations

import pytest

from policy.audit.schema import SELECT_COLUMNS, record_hash
from policy.audit.verify import DELETED, EDITED, INSERTED, REORDERED, verify

from .conftest import file_format, make_record, raw, write


def _row(conn, seq) -> dict:
    values = conn.execute(f"SELECT {SELECT_COLUMNS} FROM decisions WHERE seq = ?", (seq,)).fetchone()
    row = dict(zip(SELECT_COLUMNS.split(", "), values))
    row["_format"] = file_format(conn.execute("PRAGMA database_list").fetchone()[2])
    return row


def _insert(conn, row: dict, row_id: int | None = None) -> None:
    row = {k: v for k, v in row.items() if k != "_format"}
    cols = ["id", *row] if row_id is not None else list(row)
    vals = [row_id, *row.values()] if row_id is not None else list(row.values())
    conn.execute(f"INSERT INTO decisions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)


def _rehash(row: dict) -> dict:
    """What a forger who knows the format computes (the hash is not secret)."""
    row["hash"] = record_hash(row["_format"], row)
    return row


def test_intact_chain_verifies_and_reports_its_head(log_path):
    log = write(log_path, [make_record(i) for i in range(10)])
    report = verify([str(log_path)])
    assert report.ok and report.problem is None
    assert report.records == 10
    assert report.files == [str(log_path)]
    (chain,) = report.chains
    assert (chain.first_seq, chain.last_seq, chain.last_hash) == (1, 10, log.last_hash)


def test_edited_field_is_reported_at_that_record(chain10):
    raw(chain10).execute("UPDATE decisions SET account_id = '900666' WHERE seq = 4")
    report = verify([str(chain10)])
    assert not report.ok
    assert (report.problem.seq, report.problem.kind) == (4, EDITED)
    assert report.problem.file == str(chain10)
    assert report.records == 3


def test_edited_record_with_recomputed_hash_is_still_caught(chain10):
    conn = raw(chain10)
    row = _row(conn, 4)
    row["codes"] = "0"   # hide the rejection, and cover the edit with a fresh hash
    _rehash(row)
    conn.execute("UPDATE decisions SET codes = ?, hash = ? WHERE seq = 4", (row["codes"], row["hash"]))
    report = verify([str(chain10)])
    assert (report.problem.seq, report.problem.kind) == (4, EDITED)
    assert "rewritten" in report.problem.message


def test_deleted_record(chain10):
    raw(chain10).execute("DELETE FROM decisions WHERE seq = 6")
    report = verify([str(chain10)])
    assert (report.problem.seq, report.problem.kind) == (6, DELETED)
    assert report.problem.message == "record 6 is missing"


def test_deleted_range(chain10):
    raw(chain10).execute("DELETE FROM decisions WHERE seq BETWEEN 3 AND 5")
    assert verify([str(chain10)]).problem.message == "records 3-5 are missing"


def test_forged_record_appended_with_a_taken_seq(chain10):
    conn = raw(chain10)
    forged = _row(conn, 7)
    forged.update(account_id="900777", prev_hash="f" * 64)
    _insert(conn, _rehash(forged))
    report = verify([str(chain10)])
    assert (report.problem.seq, report.problem.kind) == (7, INSERTED)


def test_forged_record_slipped_into_place_with_a_valid_link(chain10):
    """The forger renumbers the physical ids to put the record where seq 5 was, chained to 4."""
    conn = raw(chain10)
    forged = _row(conn, 5)
    forged["results"] = forged["results"].replace("reject", "accept")
    _rehash(forged)
    conn.execute("UPDATE decisions SET id = -id - 1 WHERE id >= 5")
    conn.execute("UPDATE decisions SET id = -id WHERE id < 0")
    _insert(conn, forged, row_id=5)
    report = verify([str(chain10)])
    assert (report.problem.seq, report.problem.kind) == (5, INSERTED)


def test_forged_record_that_does_not_chain_in_front_of_the_genuine_one(chain10):
    conn = raw(chain10)
    forged = _row(conn, 5)
    forged.update(account_id="900777", prev_hash="e" * 64)
    conn.execute("UPDATE decisions SET id = -id - 1 WHERE id >= 5")
    conn.execute("UPDATE decisions SET id = -id WHERE id < 0")
    _insert(conn, _rehash(forged), row_id=5)
    assert (verify([str(chain10)]).problem.kind) == INSERTED


def test_swapped_records_are_reordered(chain10):
    conn = raw(chain10)
    conn.execute("UPDATE decisions SET id = 1000 WHERE seq = 3")
    conn.execute("UPDATE decisions SET id = 3 WHERE seq = 4")
    conn.execute("UPDATE decisions SET id = 4 WHERE seq = 3")
    report = verify([str(chain10)])
    assert (report.problem.seq, report.problem.kind) == (3, REORDERED)


def test_number_index_must_match_destinations(chain10):
    conn = raw(chain10)
    conn.execute("DELETE FROM decision_numbers WHERE seq = 2 AND number = '13900139000'")
    report = verify([str(chain10)])
    assert (report.problem.seq, report.problem.kind) == (2, EDITED)
    assert "number index" in report.problem.message


def test_forged_number_index_row(chain10):
    raw(chain10).execute("INSERT INTO decision_numbers (seq, number) VALUES (3, '13700000000')")
    report = verify([str(chain10)])
    assert (report.problem.seq, report.problem.kind) == (3, INSERTED)


def test_not_a_decision_log(tmp_path):
    other = tmp_path / "other.db"
    raw(other).execute("CREATE TABLE t (x)")
    with pytest.raises(ValueError, match="not a decision log"):
        verify([str(other)])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        verify([str(tmp_path / "nope*.db")])
