"""YAML read as node trees that keep their positions, and the typed value of a scalar node.

The loader validates nodes rather than constructed Python objects so that every problem can
name the line and column it comes from. libyaml's composer is used when present: it is fast and
refuses nesting deeper than 1000 levels with a clean error instead of exhausting the stack.
"""
from __future__ import annotations

from dataclasses import dataclass

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML wheels ship libyaml
    from yaml import SafeLoader as _Loader

__all__ = ["MappingNode", "Node", "ScalarNode", "SequenceNode", "YamlSyntaxError", "compose",
           "scalar_value", "describe", "Unsupported"]

_TAG = "tag:yaml.org,2002:"


@dataclass
class YamlSyntaxError(Exception):
    line: int  # 1-based
    column: int  # 1-based
    message: str


def _line_col(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def compose(data: bytes) -> Node | None:
    """The single document in `data` as a node tree (None when empty); YamlSyntaxError if not YAML."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise YamlSyntaxError(line, column, f"not UTF-8 text (byte 0x{data[e.start]:02x})") from None
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        message = "YAML syntax error: " + (e.problem or e.context or "not valid YAML")
        if e.problem and e.context:
            where = e.context_mark
            same = where is None or (where.line, where.column) == (mark.line, mark.column)
            at = "" if same else f" at line {where.line + 1}, column {where.column + 1}"
            message += f" ({e.context}{at})"
        if mark is None:
            raise YamlSyntaxError(1, 1, message) from None
        raise YamlSyntaxError(mark.line + 1, mark.column + 1, message) from None
    except yaml.reader.ReaderError as e:
        line, column = _line_col(text, e.position)
        raise YamlSyntaxError(line, column, f"YAML syntax error: {e.reason} (character #x{e.character:04x})") from None
    except RecursionError:  # only the pure-Python composer recurses per nesting level
        raise YamlSyntaxError(1, 1, "YAML syntax error: nested too deeply") from None


@dataclass(frozen=True)
class Unsupported:
    """A scalar whose tag the rules never accept (dates, binary, custom tags)."""
    tag: str
    text: str


_constructor = SafeConstructor()
_BUILD = {
    _TAG + "int": SafeConstructor.construct_yaml_int,
    _TAG + "float": SafeConstructor.construct_yaml_float,
    _TAG + "bool": SafeConstructor.construct_yaml_bool,
}


def scalar_value(node: ScalarNode):
    """The typed value of a scalar: str, int, float, bool, None, or Unsupported."""
    tag = node.tag
    if tag == _TAG + "str":
        return node.value
    if tag == _TAG + "null":
        return None
    build = _BUILD.get(tag)
    if build is None:
        return Unsupported(tag, node.value)
    try:
        return build(_constructor, node)
    except (ConstructorError, ValueError):
        return Unsupported(tag, node.value)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def describe(node: Node) -> str:
    """What a node holds, for "expected X, got Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    value = scalar_value(node)
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({node.value})"
    if isinstance(value, int):
        return f"an integer ({node.value})"
    if isinstance(value, float):
        return f"a number ({node.value})"
    if isinstance(value, str):
        return f"a string ({_short(value)!r})"
    tag = value.tag.replace(_TAG, "!!")
    kind = "a date" if tag == "!!timestamp" else f"a value tagged {tag}"
    return f"{kind} ({_short(value.text)!r})"
