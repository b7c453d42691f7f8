"""Shared bits: percentiles, RSS, a results table."""

from __future__ import annotations

import statistics
import subprocess
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
            f"| {self.name} | {_number(self.figure)} {self.unit} | {self.baseline_name}: "
            f"{_number(self.baseline)} {self.unit} | {self.ratio:.2f}× | {self.target} | {mark} |"
        )


def _number(value: float) -> str:
    """Counts as counts (143307 events, not 143307.0); measurements to one decimal."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def git_repository(path: Path, files: dict[str, str]) -> Path:
    """A git repository at `path` with `files` (relative path -> text) in one commit."""
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(path), *args], check=True)
    return path
