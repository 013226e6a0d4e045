"""docs/codes.md names every code of the seed table, and every test it cites exists."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "codes.md").read_text(encoding="utf-8")

# the seed table (../shared/seed/error-codes.txt), section by section
LOGIN = [0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 21, 100, 102]
SUBMIT = [0, 4, 5, 9, 10, 12, 15, 16, 17, 18, 19, 20, 22]
REPORT = ["MA:0001", "MA:0002", "MA:0003", "MA:0005", "MA:0006", "MA:0009", "MA:0011", "MA:0013",
          "MA:0014", "MA:0021", "MA:0022", "MA:0023", "MA:0024", "MA:0025", "MA:0026", "MA:0027",
          "MA:0028", "MA:0029", "MA:0030", "MA:0033", "MA:0034", "MA:0035", "MA:0036", "MA:0037",
          "MA:0038", "MA:0039", "MA:0041", "MA:0042", "MA:0043", "MO:200", "MO:201", "MO:0254",
          "MO:0255", "MO:NNNN"]
PUSH = [0, 252, 253, 254]


def _section(title: str) -> str:
    return DOC.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _codes_in(section: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\| ([^ |]+) \|", section, re.M)}


def test_every_seed_code_has_a_row():
    assert {str(c) for c in LOGIN} <= _codes_in(_section("Login"))
    assert {str(c) for c in SUBMIT} <= _codes_in(_section("Submit"))
    assert set(REPORT) <= _codes_in(_section("Status reports"))
    assert {str(c) for c in PUSH} <= _codes_in(_section("Report push"))


def test_every_cited_test_exists():
    cited = set(re.findall(r"`((?:e2e|frontend|forwarder|facts|rules|audit|counters|http_api)/[\w/]+\.py)(?:::(\w+))?", DOC))
    assert cited
    for path, func in cited:
        source = (ROOT / "tests" / path).read_text(encoding="utf-8")
        if func:
            assert re.search(rf"^(async )?def {func}\(", source, re.M), f"{path}::{func} is cited but missing"
