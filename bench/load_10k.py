"""10,000 automation files: load and validate ≤ 3 s, peak RSS ≤ 200 MB.

Baseline, same run and same files: parsing the YAML alone (libyaml), no validation.
Each side runs in a fresh interpreter so peak RSS is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from ._util import Result

N = 10_000

FULL = (
    """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from daemon.loader import Loader
catalog = Loader(Path(sys.argv[1]) / "automations", Path(sys.argv[1]) / "skills").load()
elapsed = time.perf_counter() - t0
assert len(catalog.automations) == %d and not catalog.problems, catalog.problems[:3]
print(json.dumps({"s": elapsed, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
    % N
)

BASE = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
import yaml
for p in sorted((Path(sys.argv[1]) / "automations").glob("*.yaml")):
    yaml.load(p.read_text(), Loader=yaml.CSafeLoader)
elapsed = time.perf_counter() - t0
print(json.dumps({"s": elapsed, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_tree(root: Path) -> None:
    skill = root / "skills" / "bench"
    (skill / "scripts").mkdir(parents=True)
    (skill / "SKILL.md").write_text(
        "---\nname: bench\ndescription: A benchmark skill.\n---\nDo it.\n"
    )
    (skill / "scripts" / "run.py").write_text("print()\n")
    (skill / "nightshift.yaml").write_text(
        "entrypoint: scripts/run.py\ninputs:\n  target: {type: string, required: true}\n"
        "  level: {type: integer, default: 1}\n"
    )
    autos = root / "automations"
    autos.mkdir()
    for i in range(N):
        (autos / f"a{i:05d}.yaml").write_text(
            textwrap.dedent(
                f"""\
                name: auto-{i:05d}
                description: Automation number {i}
                triggers:
                  - {{type: cron, expr: "{i % 60} {i % 24} * * *", timezone: Europe/Berlin}}
                  - {{type: interval, every: {i % 50 + 1}m}}
                when: "event.source == 'schedule'"
                skill: bench
                inputs: {{target: "repo-{i}", level: {i % 5}}}
                policies: {{timeout: 10m, retries: {{max: 2, backoff: 30s}}, misfire: skip}}
                """
            )
        )


def run_side(code: str, root: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tree(root)
        run_side(BASE, root)  # warm the page cache for both sides
        base = run_side(BASE, root)
        full = run_side(FULL, root)
    return [
        Result(
            "load+validate 10,000 automations",
            full["s"],
            "s",
            "YAML parse only",
            base["s"],
            "≤ 3 s",
            full["s"] <= 3.0,
        ),
        Result(
            "peak RSS loading 10,000 automations",
            full["peak_mb"],
            "MB",
            "YAML parse only",
            base["peak_mb"],
            "≤ 200 MB",
            full["peak_mb"] <= 200,
        ),
    ]
