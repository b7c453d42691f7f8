"""Durations as people write them in YAML: `90`, `45s`, `15m`, `1h30m`, `2d`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Far beyond any timeout or interval anyone means, and far inside what timedelta, APScheduler
# and the databases can hold (timedelta alone stops at 999,999,999 days).
MAX_SECONDS = 100 * 366 * 86400


def _bounded(seconds: float, value: Any) -> timedelta:
    if not seconds <= MAX_SECONDS:  # also refuses NaN
        raise ValueError(f"duration {value!r} is too long (at most 100 years)")
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    return timedelta(seconds=seconds)


def parse_duration(value: Any) -> timedelta:
    """Parse seconds (int/float) or a compact string like `1h30m` into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 15m or 2h")
    if isinstance(value, int | float):
        return _bounded(value, value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return _bounded(float(text), value)
        pos, total = 0, 0.0
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos == len(text) and text:
            return _bounded(total, value)
    raise ValueError(f"invalid duration {value!r}: expected e.g. 30s, 15m, 1h30m or seconds")


def format_duration(td: timedelta) -> str:
    """The compact form of a duration (`1h30m`), the inverse of `parse_duration`."""
    secs = td.total_seconds()
    if secs < 1 and secs > 0:
        return f"{round(secs * 1000)}ms"
    secs = int(secs)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            out += f"{secs // size}{unit}"
            secs %= size
    return out or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$|^\d+(\.\d+)?$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "seconds, or e.g. 30s, 15m, 1h30m",
        }
    ),
]
"""A timedelta field that accepts seconds or compact strings and serialises compactly."""
