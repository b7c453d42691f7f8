"""Reading GitHub Actions job logs: timestamps off, failing test names out."""

from __future__ import annotations

import re

_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ", re.M)
_FAILING_TEST = re.compile(
    r"^(?:FAILED|ERROR) (\S+::\S+)"  # pytest
    r"|^\s*--- FAIL: (\S+)"  # go test
    "|^\\s*\u25cf (.+?) \u203a"  # jest: bullet, suite, arrow, test
    r"|^FAIL (\S+\.(?:js|ts|jsx|tsx))",  # jest files
    re.M,
)


def clean(log: str) -> str:
    """The log without the timestamp GitHub puts before every line."""
    return _STAMP.sub("", log)


def failing_tests(log: str) -> list[str]:
    """Names of the tests the log reports as failed (pytest, go test, jest), in order."""
    found: list[str] = []
    for match in _FAILING_TEST.finditer(clean(log)):
        name = next(g for g in match.groups() if g)
        if name not in found:
            found.append(name)
    return found
