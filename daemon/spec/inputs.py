"""`key=value` words (CLI `--input`, chat commands) as typed inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ..errors import NightshiftError


def parse_key_values(pairs: Sequence[str]) -> dict[str, Any]:
    """`["n=3", "dry=true", "name=x"]` → `{"n": 3, "dry": True, "name": "x"}` (YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise NightshiftError(f"expected key=value, got {pair!r}")
        try:
            out[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            out[key] = raw
    return out
