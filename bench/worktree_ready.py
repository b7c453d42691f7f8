"""A run's worktree, ready for its first command: taken from the repository's spare against
`git worktree add` (the baseline), for a small repository and one of 5,000 files.

Both go through `workspace.create` in alternating rounds (median of 10); after each, the
worktree is removed as after a run, and the spare for the next round is made untimed (the
daemon makes it after a run, off the next run's path).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from daemon import workspace

from ._util import Result, git_repository

ROUNDS = 10


async def measure(files: int) -> Result:
    added, taken = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        texts = {f"d{i % 50}/f{i}.txt": f"line {i}\n" * 20 for i in range(files)}
        repo = git_repository(root / "repo", texts)
        trees, spares = root / "trees", root / "spares"
        done = workspace.Outcome("", "", None)
        for i in range(ROUNDS):
            t0 = time.perf_counter()
            tree = await workspace.create(repo, trees, "bench", 2 * i, None)
            added.append(time.perf_counter() - t0)
            await workspace.remove(tree, done)
            await workspace.prepare_spare(repo, spares, None)
            t0 = time.perf_counter()
            tree = await workspace.create(repo, trees, "bench", 2 * i + 1, None, spares)
            taken.append(time.perf_counter() - t0)
            await workspace.remove(tree, done)
    return Result(
        f"run worktree ready, {files:,} files, from the spare",
        statistics.median(taken) * 1000,
        "ms",
        "git worktree add",
        statistics.median(added) * 1000,
        "—",
        True,
    )


def main() -> list[Result]:
    return [asyncio.run(measure(files)) for files in (3, 5000)]
