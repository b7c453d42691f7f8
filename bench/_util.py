"""Shared bits: percentiles, RSS, a results table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found")


@dataclass
class Result:
    name: str
    figure: float
    unit: str
    baseline_name: str
    baseline: float
    target: str
    ok: bool

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else float("nan")

    def row(self) -> str:
        mark = "—" if self.target == "—" else "✔" if self.ok else "✘"
        return (
            f"| {self.name} | {self.figure:.1f} {self.unit} | {self.baseline_name}: "
            f"{self.baseline:.1f} {self.unit} | {self.ratio:.2f}× | {self.target} | {mark} |"
        )


def median(values: list[float]) -> float:
    return statistics.median(values)
