"""The house: imports run one way with no cycle, every package imports on its own, and what a
script skill imports stays out of the daemon's core."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_no_module_of_the_daemon_imports_one_that_imports_it_back() -> None:
    # Type-only imports count too: a cycle for the type checker is one for a reader.
    graph = grimp.build_graph("daemon", exclude_type_checking_imports=False)
    circles = [
        (importer, imported)
        for importer in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported in graph.modules
        and graph.find_shortest_chain(importer=imported, imported=importer)
    ]
    assert circles == []


def imports_around_faces(root: Path) -> list[str]:
    """`from ..pkg.module import name` in a module outside `pkg`: an import that goes around
    the package's face."""
    packages = {init.parent for init in root.rglob("__init__.py")} - {root}
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level or not node.module:
                continue
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            target = base.joinpath(*node.module.split("."))
            package = next((p for p in packages if target.is_relative_to(p) and target != p), None)
            if package is not None and not path.is_relative_to(package):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.module}")
    return found


def test_a_package_is_imported_through_its_face(tmp_path: Path) -> None:
    assert imports_around_faces(ROOT / "daemon") == []
    # The check finds one planted.
    planted = tmp_path / "daemon"
    shutil.copytree(ROOT / "daemon", planted, ignore=shutil.ignore_patterns("__pycache__"))
    (planted / "dispatch.py").write_text(
        (planted / "dispatch.py").read_text() + "\nfrom .store.tables import RunRow\n"
    )
    assert imports_around_faces(planted) == [
        f"daemon/dispatch.py:{len((planted / 'dispatch.py').read_text().splitlines())}: "
        "store.tables"
    ]


def test_every_package_imports_first_in_a_fresh_interpreter() -> None:
    packages = sorted(
        "daemon." + p.name
        for p in (ROOT / "daemon").iterdir()
        if (p / "__init__.py").exists() or (p.suffix == ".py" and p.stem != "__main__")
    )
    procs = {
        name.removesuffix(".py"): subprocess.Popen(
            [sys.executable, "-c", f"import {name.removesuffix('.py')}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in packages
    }
    failed = {name: p.communicate()[1].strip().splitlines()[-1:] for name, p in procs.items()}
    assert {name: err for name, err in failed.items() if procs[name].returncode} == {}


def loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", ["daemon.skillkit", "daemon.github", "daemon.prometheus"])
def test_what_skills_import_loads_none_of_the_core(module: str) -> None:
    loaded = loaded_by(f"import {module}")
    core = {"daemon.app", "daemon.executor", "daemon.store", "daemon.loader", "daemon.dispatch"}
    assert not loaded & core
    assert not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "sqlmodel", "structlog")}


def test_the_kit_alone_loads_no_pydantic_and_the_faces_load_on_use() -> None:
    assert not {m for m in loaded_by("import daemon.skillkit") if m.startswith("pydantic")}
    assert "daemon.errors" not in loaded_by("import daemon")
    assert "daemon.errors" in loaded_by("import daemon\ndaemon.NightshiftError")
    # The face's list and its lazy table name the same things, and each resolves.
    faces = loaded_by("import daemon\nfor name in daemon.__all__: getattr(daemon, name)")
    assert {"daemon.config", "daemon.errors", "daemon.runs", "daemon.spec"} <= faces


def test_the_layer_contracts_catch_a_planted_cycle(tmp_path: Path) -> None:
    copy = tmp_path / "house"
    shutil.copytree(ROOT / "daemon", copy / "daemon", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")

    def lint() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LINT_IMPORTS), "--no-cache"],
            cwd=copy,
            env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )

    clean = lint()
    assert clean.returncode == 0, clean.stdout
    status = copy / "daemon" / "runs" / "status.py"
    status.write_text(status.read_text() + "\nfrom ..executor import Executor  # planted\n")
    planted = lint()
    assert planted.returncode == 1
    assert "daemon.runs is not allowed to import daemon.executor" in planted.stdout
