"""A script skill's start: `import daemon.skillkit` ≤ 1.5× a bare interpreter's start.

Every script skill starts a fresh interpreter and imports the kit before its first step, so
this is paid on every run. Baseline, same run and same interpreter: `python -c pass`. The two
are timed interleaved (so machine noise falls on both), median of each.
"""

from __future__ import annotations

import subprocess
import sys
import time

from ._util import Result, median

ROUNDS = 41
TARGET = 1.5


def _start(code: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return (time.perf_counter() - began) * 1000


def main() -> list[Result]:
    bare: list[float] = []
    kit: list[float] = []
    _start("import daemon.skillkit")  # compiled bytecode in place before timing
    for _ in range(ROUNDS):
        bare.append(_start("pass"))
        kit.append(_start("import daemon.skillkit"))
    figure, baseline = median(kit), median(bare)
    return [
        Result(
            "script skill start: import daemon.skillkit",
            round(figure, 1),
            "ms",
            "python -c pass",
            round(baseline, 1),
            f"≤ {TARGET}×",
            figure <= TARGET * baseline,
        )
    ]
