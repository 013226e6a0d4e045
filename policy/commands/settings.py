"""smspolicy settings: every knob with its default and meaning (docs/settings.md is its output)."""
from __future__ import annotations

import inspect
import re

from .. import settings as settings_module

NAME = "settings"
HELP = "print every setting, its default and meaning (markdown), or the values in force"


def add_arguments(p) -> None:
    p.add_argument("--effective", action="store_true",
                   help="print the values after the settings file, environment and defaults")


def _comments() -> dict[str, str]:
    source = inspect.getsource(settings_module.Settings)
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\s+(\w+): \w+ = .*?#\s*(.*)$", source, re.M)}


def markdown() -> str:
    notes = _comments()
    lines = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    for name, type_, default in settings_module.describe():
        note = notes.get(name, "").replace("|", "\\|")  # a bare | would split the table cell
        lines.append(f"| `{name}` | {type_} | `{default!r}` | {note} |")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    if args.effective:
        s = settings_module.load_settings(args.config)
        for name, _, _ in settings_module.describe():
            print(f"{name} = {getattr(s, name)!r}")
        return 0
    print(markdown(), end="")
    return 0
