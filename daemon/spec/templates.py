"""Sandboxed Jinja templates for automation inputs and `when` filters.

Templates see only the context they are given (`event`, `automation`, `now`); the sandbox
refuses attribute tricks, so an event payload cannot reach into the daemon.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic_core import PydanticCustomError

from ..errors import TemplateError

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
# Jinja parses and compiles recursively: thousands of nested parentheses exhaust the stack.
_TOO_DEEP = "expression is nested too deeply"
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.S)


def is_template(value: str) -> bool:
    """True when the string contains Jinja markup."""
    return "{{" in value or "{%" in value


@lru_cache(maxsize=4096)
def _compile_expression(expr: str) -> Any:
    return _env.compile_expression(expr, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compile_template(text: str) -> Any:
    return _env.from_string(text)


def check_syntax(value: str) -> str | None:
    """Compile a template or expression; return the error text, or None when it is valid."""
    found = syntax_error(value)
    return None if found is None else found[0]


def check_condition(expr: str) -> str | None:
    """Compile a `when` expression; return the error text, or None when it is valid."""
    found = syntax_error(expr, condition=True)
    return None if found is None else found[0]


def syntax_error(value: str, *, condition: bool = False) -> tuple[str, int] | None:
    """(the error text, its line within `value`) when `value` does not compile (as a `when`
    expression with `condition`, else as a template), or None."""
    try:
        if condition:
            _compile_expression(value)
        elif m := _SINGLE_EXPR.match(value):
            _compile_expression(m.group("expr"))
        else:
            _compile_template(value)
    except JinjaTemplateError as exc:
        kind = "expression" if condition else "template"
        return f"{kind} error: {exc}", int(getattr(exc, "lineno", None) or 1)
    except RecursionError:
        return _TOO_DEEP, 1
    return None


def checked(value: str, *, condition: bool = False) -> str:
    """`value` when it compiles; else a pydantic error carrying the line within it (the
    reader of the file adds the line the value starts on)."""
    found = syntax_error(value, condition=condition)
    if found is None:
        return value
    message, line = found
    raise PydanticCustomError("template", "{message}", {"message": message, "template_line": line})


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template inside `value` (recursively).

    A string that is exactly one `{{ expression }}` keeps the expression's native type, so
    `{{ event.payload.number }}` stays an integer.
    """
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            m = _SINGLE_EXPR.match(value)
            if m:
                return _compile_expression(m.group("expr"))(**context)
            return _compile_template(value).render(**context)
        except JinjaTemplateError as exc:
            raise TemplateError(f"{value!r}: {exc}") from exc
        except RecursionError:
            raise TemplateError(f"{value[:60]!r}: {_TOO_DEEP}") from None
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def evaluate(expr: str, context: Mapping[str, Any]) -> bool:
    """Evaluate a `when` expression to a boolean."""
    try:
        return bool(_compile_expression(expr)(**context))
    except JinjaTemplateError as exc:
        raise TemplateError(f"when {expr!r}: {exc}") from exc
    except RecursionError:
        raise TemplateError(f"when {expr[:60]!r}: {_TOO_DEEP}") from None
