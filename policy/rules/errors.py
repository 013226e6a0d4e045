"""What is wrong with a rules folder, each problem pointing at its file, line and column."""
from __future__ import annotations

from dataclasses import dataclass

from .model import Where


@dataclass(frozen=True)
class Problem:
    where: Where
    message: str

    def sort_key(self) -> tuple:
        return (self.where.file, self.where.line, self.where.column, self.where.path, self.message)

    def __str__(self) -> str:
        # a problem with no YAML path (a syntax error, a line of an entry file) reads "file:line:col: message"
        w = self.where
        # a file name that is not UTF-8 holds surrogates (os.fsdecode): show its bytes escaped
        file = w.file.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        place = f"{file}:{w.line}:{w.column}"
        return f"{place}: {w.path}: {self.message}" if w.path else f"{place}: {self.message}"


class PolicyError(Exception):
    """The rules folder is not valid; `problems` lists everything found, sorted by file and line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
