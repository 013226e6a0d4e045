"""Reading YAML mappings against a declared set of keys, collecting every problem on the way.

A converter takes (node, reader, path) and returns the value, or raises Invalid with the
message; `Reported` means the problems were already recorded (e.g. by a list converter that
kept going after a bad item). The reader never stops at the first problem.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import Problem
from .model import Where
from .yamlmarks import MappingNode, Node, ScalarNode, SequenceNode, describe, scalar_value

Converter = Callable[[Node, "Reader", str], Any]


class Invalid(Exception):
    """A bad value; `node` and `path` say where, when that is not the value being converted."""

    def __init__(self, message: str, node: Node | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.node = node
        self.path = path


class Reported(Exception):
    """The value is bad and its problems are already on the reader."""


@dataclass(frozen=True)
class Ref:
    section: str  # which section the id must exist in
    ident: str
    where: Where
    what: str  # "channel", "keyword group", ...


@dataclass
class Reader:
    file: str = ""
    problems: list[Problem] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)

    def where(self, node: Node | None, path: str) -> Where:
        if node is None:
            return Where(self.file, 1, 1, path)
        mark = node.start_mark
        return Where(self.file, mark.line + 1, mark.column + 1, path)

    def problem(self, node: Node | None, path: str, message: str) -> None:
        self.problems.append(Problem(self.where(node, path), message))

    def ref(self, section: str, ident: str, node: Node, path: str, what: str) -> None:
        self.refs.append(Ref(section, ident, self.where(node, path), what))


def suggest(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return "; expected one of: " + ", ".join(known)


def mapping(node: Node, r: Reader, path: str, what: str = "a mapping") -> dict[str, tuple[ScalarNode, Node]] | None:
    """key -> (key node, value node); None (reported) when the node is not a mapping."""
    if not isinstance(node, MappingNode):
        r.problem(node, path, f"expected {what}, got {describe(node)}")
        return None
    out: dict[str, tuple[ScalarNode, Node]] = {}
    for knode, vnode in node.value:
        key = scalar_value(knode) if isinstance(knode, ScalarNode) else None
        if not isinstance(key, str):
            r.problem(knode, path, f"keys must be plain words, got {describe(knode)}")
            continue
        if key in out:
            first = out[key][0].start_mark
            r.problem(knode, f"{path}.{key}" if path else key,
                      f"duplicate key '{key}' (first at line {first.line + 1})")
            continue
        out[key] = (knode, vnode)
    return out


@dataclass(frozen=True)
class Field:
    conv: Converter
    required: bool = False


def read_fields(node: Node, fields: dict[str, Field], r: Reader, path: str
                ) -> tuple[dict[str, Any], bool, dict[str, tuple[ScalarNode, Node]]]:
    """The converted values present in the mapping, whether every key was valid, and the
    mapping's (key node, value node) pairs for checks that span several keys."""
    items = mapping(node, r, path)
    if items is None:
        return {}, False, {}
    ok = True
    out: dict[str, Any] = {}
    for key, (knode, vnode) in items.items():
        sub = f"{path}.{key}"
        spec = fields.get(key)
        if spec is None:
            r.problem(knode, sub, f"unknown key '{key}'" + suggest(key, fields))
            ok = False
            continue
        try:
            out[key] = spec.conv(vnode, r, sub)
        except Invalid as e:
            r.problem(e.node or vnode, e.path or sub, e.message)
            ok = False
        except Reported:
            ok = False
    for key, spec in fields.items():
        if spec.required and key not in items:
            r.problem(node, path, f"missing required key '{key}'")
            ok = False
    return out, ok, items


# --- converters -----------------------------------------------------------------------------

def scalar(node: Node):
    return scalar_value(node) if isinstance(node, ScalarNode) else node


def text(node: Node, r: Reader, path: str) -> str:
    """A string; a bare number counts as exactly what is written (ids, codes, secrets): `888888`,
    `888.888` and `1_000` are the strings "888888", "888.888" and "1_000" (docs/rules.md)."""
    if isinstance(node, ScalarNode):
        value = scalar_value(node)
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return node.value
    raise Invalid(f"expected a string, got {describe(node)}")


def word(node: Node, r: Reader, path: str) -> str:
    value = text(node, r, path).strip()
    if not value:
        raise Invalid("must not be empty")
    return value


def ident(node: Node, r: Reader, path: str) -> str:
    value = text(node, r, path)
    if not value or not all(c.isascii() and (c.isalnum() or c in "_.-") for c in value):
        raise Invalid(f"ids use letters, digits, '_', '-' and '.' only, got {value!r}")
    return value


def integer(lo: int, hi: int | None = None) -> Converter:
    def conv(node: Node, r: Reader, path: str) -> int:
        value = scalar(node)
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"expected an integer, got {describe(node)}")
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise Invalid(f"must be {bound}, got {value}")
        return value
    return conv


def positive_number(node: Node, r: Reader, path: str) -> float:
    value = scalar(node)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise Invalid(f"expected a number, got {describe(node)}")
    if not value > 0 or value == float("inf"):
        raise Invalid(f"must be a positive number, got {node.value}")
    return float(value)


def boolean(node: Node, r: Reader, path: str) -> bool:
    value = scalar(node)
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {describe(node)}")
    return value


def choice(*allowed: str) -> Converter:
    def conv(node: Node, r: Reader, path: str) -> str:
        # YAML 1.1 reads a bare `off` or `no` as false; where that word is a choice, it means the word
        if isinstance(node, ScalarNode) and isinstance(scalar_value(node), bool) and node.value in allowed:
            return node.value
        value = text(node, r, path)
        if value not in allowed:
            raise Invalid(f"'{value}' is not one of: {', '.join(allowed)}")
        return value
    return conv


def optional(inner: Converter) -> Converter:
    """`inner`, or None when the YAML says null / leaves the value empty."""
    def conv(node: Node, r: Reader, path: str):
        if isinstance(node, ScalarNode) and scalar_value(node) is None:
            return None
        return inner(node, r, path)
    return conv


def list_of(item: Converter, non_empty: bool = False) -> Converter:
    """A tuple of converted items; every bad item is reported, not just the first."""
    def conv(node: Node, r: Reader, path: str) -> tuple:
        if not isinstance(node, SequenceNode):
            raise Invalid(f"expected a list, got {describe(node)}")
        if non_empty and not node.value:
            raise Invalid("must list at least one item")
        out, ok = [], True
        for i, child in enumerate(node.value):
            sub = f"{path}[{i}]"
            try:
                out.append(item(child, r, sub))
            except Invalid as e:
                r.problem(e.node or child, e.path or sub, e.message)
                ok = False
            except Reported:
                ok = False
        if not ok:
            raise Reported
        return tuple(out)
    return conv


def as_node(node: Node, r: Reader, path: str) -> Node:
    """The node itself, for values whose checks depend on other keys (a rule's code and when)."""
    return node


def ref(section: str, what: str, inner: Converter = ident) -> Converter:
    """An id that must exist in `section`; checked once every file has been read."""
    def conv(node: Node, r: Reader, path: str) -> str:
        value = inner(node, r, path)
        r.ref(section, value, node, path, what)
        return value
    return conv
