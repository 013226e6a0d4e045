"""docs/rules.md stays in step with the vocabulary and the loader's schema."""
from pathlib import Path

from policy.rules import docgen
from policy.rules.loader import FILE_BLACKLIST_FIELDS, LIST_SECTIONS, PLATFORM_FIELDS, SECTIONS
from policy.vocabulary import FACTS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")


def test_generated_tables_are_pasted_unchanged():
    assert docgen.generated() in DOC, "run `python -m policy.rules.docgen` and paste its output into docs/rules.md"


def test_every_fact_is_documented():
    missing = [name for name in FACTS if f"`{name}`" not in DOC]
    assert not missing


def test_every_section_and_key_is_documented():
    for section in SECTIONS:
        assert f"### {section}" in DOC
    schemas = {**{s: f for s, (f, _) in LIST_SECTIONS.items()}, "platform": PLATFORM_FIELDS,
               "file_blacklist": FILE_BLACKLIST_FIELDS}
    for section, fields in schemas.items():
        body = DOC.split(f"### {section}\n", 1)[1].split("\n### ", 1)[0]
        missing = [key for key in fields if f"`{key}`" not in body]
        assert not missing, f"{section}: {missing}"
