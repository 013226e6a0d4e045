"""One failing rules folder per class of error, each with the exact problems it must report."""
from pathlib import Path

import pytest

from policy.rules.errors import PolicyError
from policy.rules.loader import check_policy, load_policy

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())

ERROR_CLASSES = {
    "yaml-syntax", "not-a-mapping", "unknown-section", "unknown-key", "missing-key", "wrong-type",
    "not-in-enum", "duplicate-id", "duplicate-yaml-key", "dangling-reference", "unknown-fact",
    "operator-type", "value-type", "unknown-keyword-group", "stage-mismatch", "invalid-regex",
    "regex-dialect", "bad-code", "priority-range", "empty-all-any", "operator-count", "time-window",
    "cidr", "file-blacklist-missing", "entry-file-missing", "entry-file-bad-line",
    # what the rules engine cannot run, refused by `check` as by the daemon: list, integer and
    # size limits; trees of YAML aliases; regexes whose repetitions multiply out
    "engine-limits", "condition-size", "regex-size",
    # values the operating system or a library refuses, reported instead of raised
    "bad-value", "path-name",
    # a channel's regions are provinces: routing compares nothing finer
    "channel-region",
}


def test_every_error_class_has_a_fixture():
    assert set(NAMES) == ERROR_CLASSES


@pytest.mark.parametrize("name", NAMES)
def test_fixture_reports_exactly_its_problems(name):
    folder = FIXTURES / name
    expected = (folder / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert expected, "a fixture must expect at least one problem"
    assert [str(p) for p in check_policy(folder)] == expected
    with pytest.raises(PolicyError) as err:
        load_policy(folder)
    assert [str(p) for p in err.value.problems] == expected
    assert str(err.value) == "\n".join(expected)
