"""Small rules folders written on the fly."""
from __future__ import annotations

import textwrap
from pathlib import Path

ACCOUNT = """
accounts:
  - id: "900001"
    name: demo
    secret: "888888"
"""


def write_rules(root: Path, files: dict[str, str | bytes]) -> Path:
    """Writes each file (text is dedented) under root and returns root."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
    return root


def problems(folder: Path) -> list[str]:
    from policy.rules.loader import check_policy
    return [str(p) for p in check_policy(folder)]
