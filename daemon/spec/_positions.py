"""Map pydantic error locations onto YAML source lines (pydantic has no positions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

try:  # libyaml keeps 10,000-file loads inside the time budget
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - pure-Python fallback
    _Loader = yaml.SafeLoader

_DISCRIMINATORS = ("type", "backend")


class TooDeep(yaml.YAMLError):
    """A document nested deeper than the constructor can follow."""

    problem = "nested too deeply"


def compose(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse YAML text into (node tree, plain data); raises yaml.YAMLError.

    PyYAML builds Python objects recursively: a document of a few thousand nested brackets
    exhausts the interpreter's stack, which is the file's fault, so it is reported as one.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise TooDeep() from None
    finally:
        loader.dispose()
    return node, data


def read_text(path: Path) -> str:
    """A file's text as UTF-8; raises `NotText` saying where the first bad byte is."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise NotText(line, f"not UTF-8 text: byte 0x{bad} at column {column}") from None


class NotText(ValueError):
    """A file that is not UTF-8 text; carries the line of the first bad byte."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value  # type: ignore[no-any-return]
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return node.value[part]  # type: ignore[no-any-return]
    return None


def _tag_of(node: yaml.Node) -> str | None:
    for name in _DISCRIMINATORS:
        child = _child(node, name)
        if isinstance(child, yaml.ScalarNode):
            return str(child.value)
    return None


def locate(
    root: yaml.Node | None, loc: tuple[str | int, ...], line_offset: int = 0
) -> tuple[int | None, str]:
    """(1-based line, dotted field) of a pydantic error location inside `root`.

    Parts naming a union member (the tag pydantic puts in `loc`) are dropped; a part that names
    a missing key is kept in the field and the line is that of its parent.
    """
    if root is None:
        return None, ".".join(str(p) for p in loc)
    node = root
    shown: list[str] = []
    for i, part in enumerate(loc):
        child = _child(node, part)
        if child is None:
            if isinstance(part, str) and part == _tag_of(node) and i < len(loc) - 1:
                continue
            if isinstance(part, str) and "[" in part:  # e.g. function-after[...] wrappers
                continue
            if isinstance(part, int) and isinstance(node, yaml.ScalarNode):
                continue  # one value where a list may stand (`when: "x"`): it is item 0
            shown.append(str(part))
            break
        shown.append(str(part))
        node = child
    return node.start_mark.line + 1 + line_offset, ".".join(shown)


def key_line(root: yaml.Node | None, *path: str | int) -> int | None:
    """Line of the value at `path`, or of the deepest existing parent."""
    line, _ = locate(root, path)
    return line
