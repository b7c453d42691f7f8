"""A YAML document checked against a pydantic model, every problem pinned to a line.

The loader (automations, skill manifests and front matter) and the daemon's config read their
files through here, so each one reports `file:line: field: message` in the same words.
"""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ..errors import Problem
from ._positions import _child, compose, locate


def _yaml_problem(path: Path, exc: yaml.YAMLError, text: str, line_offset: int = 0) -> Problem:
    """A YAML error as one line of text at its line of the file."""
    if isinstance(exc, yaml.reader.ReaderError):
        # The reader's refusals (a control character) carry an offset, not a line.
        line = text.count("\n", 0, exc.position) + 1 + line_offset
        column = exc.position - text.rfind("\n", 0, exc.position)
        char = exc.character
        code = char if isinstance(char, int) else ord(str(char)[:1] or "\0")
        return Problem(
            path, line, "", f"invalid YAML: {exc.reason} (#x{code:04x} at column {column})"
        )
    mark = getattr(exc, "problem_mark", None)
    at = mark.line + 1 + line_offset if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return Problem(path, at, "", f"invalid YAML: {problem}")


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation can hold, looking through Annotated, unions, lists and dicts."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, set, dict):
        args = get_args(annotation)
        if origin is dict:
            args = args[1:]
        return [m for arg in args for m in _models(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _tag(model: type[BaseModel]) -> set[str]:
    """The values a union member's discriminator (`type`, `backend`) takes."""
    out: set[str] = set()
    for name in ("type", "backend"):
        field = model.model_fields.get(name)
        if field is not None and get_origin(field.annotation) is Literal:
            out.update(str(v) for v in get_args(field.annotation))
    return out


def known_fields(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The field names valid at `loc` (the location of an unknown field's parent)."""
    candidates: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the candidates already are the items' models
        inner = [
            m
            for c in candidates
            if part in c.model_fields
            for m in _models(c.model_fields[part].annotation)
        ]
        if inner:
            candidates = inner
            continue
        tagged = [c for c in candidates if part in _tag(c)]
        if tagged:
            candidates = tagged  # a union member's tag in pydantic's location
        # otherwise a dict key (a webhook source's name): the candidates stay
    names: set[str] = set()
    for c in candidates:
        for name, field in c.model_fields.items():
            if not field.exclude:
                names.add(field.alias or name)
    return sorted(names)


def problem_message(model: type[BaseModel], err: Any) -> str:
    """A pydantic error in the words a person editing the file needs."""
    if err["type"] == "extra_forbidden" and err["loc"]:
        name = str(err["loc"][-1])
        known = known_fields(model, tuple(err["loc"][:-1]))
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"unknown field {name!r}{hint}"
    return str(err["msg"]).removeprefix("Value error, ")


def _key_line(root: yaml.Node | None, loc: tuple[Any, ...], line_offset: int) -> int | None:
    """The line of the key itself (an unknown field's value may start lines later), or None
    when the key is not found."""
    node = root
    for part in loc[:-1]:
        child = _child(node, part) if node is not None else None
        node = child if child is not None else node  # a union tag names no node: stay
    if isinstance(node, yaml.MappingNode):
        for key, _value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(loc[-1]):
                return int(key.start_mark.line) + 1 + line_offset
    return None


def _template_shift(root: yaml.Node | None, loc: tuple[Any, ...], within: int) -> int:
    """Lines from where a multi-line template's value starts to its line `within`: a block
    scalar (`|`, `>`) starts on the line after its indicator."""
    node = root
    for part in loc:
        child = _child(node, part) if node is not None else None
        node = child if child is not None else node
    block = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
    return within if block else within - 1


def validation_problems(
    model: type[BaseModel],
    path: Path,
    root: yaml.Node | None,
    exc: PydanticValidationError,
    line_offset: int = 0,
) -> list[Problem]:
    """One `Problem` per pydantic error, with the line of the YAML node it concerns."""
    out = []
    for err in exc.errors():
        line, dotted = locate(root, tuple(err["loc"]), line_offset)
        if err["type"] == "extra_forbidden" and err["loc"]:
            line = _key_line(root, tuple(err["loc"]), line_offset) or line
        within = (err.get("ctx") or {}).get("template_line")
        if line is not None and isinstance(within, int) and within > 1:
            line += _template_shift(root, tuple(err["loc"]), within)
        out.append(Problem(path, line, dotted, problem_message(model, err)))
    return out


def validate_document(
    model: type[BaseModel],
    path: Path,
    text: str,
    line_offset: int = 0,
    extra: dict[str, Any] | None = None,
) -> tuple[Any, yaml.Node | None, list[Problem]]:
    """(the model or None, the YAML node tree, the problems) of one document's text.

    `extra` fields are added to the mapping before validation (the config's own folder).
    """
    try:
        root, data = compose(text)
    except yaml.YAMLError as exc:
        return None, None, [_yaml_problem(path, exc, text, line_offset)]
    if data is None and extra is not None:
        data = {}
    if not isinstance(data, dict):
        return None, root, [Problem(path, 1 + line_offset, "", "expected a mapping of fields")]
    try:
        return model.model_validate({**data, **(extra or {})}), root, []
    except PydanticValidationError as exc:
        return None, root, validation_problems(model, path, root, exc, line_offset)
