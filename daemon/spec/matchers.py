"""Alertmanager-style label matchers: `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"`.

As in Alertmanager, regular expressions are anchored (they must match the whole value) and a
missing label reads as the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(".*"|[^"]*)\s*$')


@dataclass(frozen=True)
class Matcher:
    """One parsed label matcher."""

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when `labels` satisfy this matcher."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


@lru_cache(maxsize=4096)
def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; raises ValueError with what is wrong."""
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f'invalid matcher {text!r}: expected name="value", !=, =~ or !~')
    name, op, raw = m.groups()
    value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression in {text!r}: {exc}") from None
    return Matcher(name, op, value, regex)
