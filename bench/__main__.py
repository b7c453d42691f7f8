"""Run every benchmark and print the table for docs/benchmarks.md."""

from __future__ import annotations

import platform
import sys

from . import (
    agent_overhead,
    command_center,
    github_latency,
    idle_rss,
    intake,
    kit_import,
    load_10k,
    reload_latency,
    replicas,
    slack_latency,
    trigger_latency,
    worktree_ready,
)


def main() -> int:
    from daemon import logs

    logs.configure("human", "warning")
    results = []
    only = set(sys.argv[1:])
    modules = (
        load_10k,
        reload_latency,
        trigger_latency,
        idle_rss,
        intake,
        slack_latency,
        worktree_ready,
        agent_overhead,
        kit_import,
        command_center,
        github_latency,
        replicas,
    )
    for module in modules:
        if only and module.__name__.rsplit(".", 1)[-1] not in only:
            continue
        print(f"running {module.__name__} …", file=sys.stderr, flush=True)
        results += module.main()
    print(f"\nPython {platform.python_version()}, {platform.machine()}, {platform.system()}\n")
    print("| benchmark | figure | baseline (same run) | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(r.row())
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
