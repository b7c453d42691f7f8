"""`key=value` words (CLI `--input`, chat commands) as typed inputs."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import NightshiftError


def parse_key_values(pairs: Sequence[str]) -> dict[str, str]:
    """`["n=3", "version=3.10"]` → `{"n": "3", "version": "3.10"}`.

    Values stay the text that was typed: the skill's declared type reads them (an integer
    input takes "3" as 3, a string input keeps "3.10" as "3.10"; see `InputSpec.coerce`).
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise NightshiftError(f"expected key=value, got {pair!r}")
        out[key] = raw
    return out
