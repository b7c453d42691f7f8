#!/usr/bin/env python3
"""repo-health: a nightshift script skill (stdlib only).

Reads the run context from stdin (first line), writes RunEvents as JSON lines to stdout, and
takes steering messages ("skip tests") from stdin between steps.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def pending_steers() -> list[str]:
    """Steering messages that have arrived, without blocking."""
    out = []
    while select.select([sys.stdin], [], [], 0)[0]:
        line = sys.stdin.readline()
        if not line:
            break
        msg = json.loads(line)
        if msg.get("type") == "steer":
            out.append(msg["text"])
    return out


class Check:
    def __init__(self, ctx: dict[str, Any]) -> None:
        self.inputs = ctx["inputs"]
        repo = Path(self.inputs["repository"])
        base = Path(ctx["automation"]["workspace"].get("path") or os.getcwd())
        self.repo = (repo if repo.is_absolute() else base / repo).resolve()
        self.timeout = int(self.inputs["step_timeout"])
        self.findings: list[tuple[str, str]] = []
        self.skipped: set[str] = set()

    def steer(self) -> None:
        for text in pending_steers():
            words = text.lower()
            hit = [
                s
                for s in ("git", "lint", "tests", "outdated")
                if s in words or s.rstrip("s") in words
            ]
            if "skip" in words and hit:
                self.skipped.update(hit)
                emit(type="message", text=f"steering taken: skipping {', '.join(hit)}")
            else:
                emit(type="message", text=f"steering noted (no step matched): {text}")

    def want(self, step: str) -> bool:
        self.steer()
        if step in self.skipped:
            emit(type="message", text=f"{step}: skipped as steered")
            return False
        return True

    def sh(self, command: list[str] | str) -> tuple[int | None, str]:
        argv = shlex.split(command) if isinstance(command, str) else command
        shown = command if isinstance(command, str) else shlex.join(command)
        start = time.monotonic()
        try:
            proc = subprocess.run(
                argv, cwd=self.repo, capture_output=True, text=True, timeout=self.timeout
            )
            code, output = proc.returncode, proc.stdout + proc.stderr
        except FileNotFoundError:
            code, output = None, f"{argv[0]}: not found"
        except subprocess.TimeoutExpired:
            code, output = None, f"timed out after {self.timeout}s"
        emit(
            type="command",
            command=shown,
            exit_code=code,
            output_tail=output[-3000:],
            duration_s=round(time.monotonic() - start, 3),
        )
        return code, output

    def python(self) -> str:
        venv = self.repo / ".venv" / "bin" / "python"
        return str(venv) if venv.exists() else sys.executable

    # -- steps --------------------------------------------------------------------------
    def git(self) -> None:
        emit(type="step", title="Git state")
        code, out = self.sh(["git", "status", "--porcelain=v1", "--branch"])
        if code != 0:
            self.findings.append(("git", "not a git repository"))
            return
        lines = out.splitlines()
        branch = lines[0].removeprefix("## ") if lines else "?"
        changed = [line for line in lines[1:] if not line.startswith("??")]
        untracked = [line for line in lines[1:] if line.startswith("??")]
        _, last = self.sh(["git", "log", "-1", "--format=%h %s (%cr)"])
        emit(type="message", text=f"branch {branch}; last commit {last.strip() or 'none'}")
        if changed:
            self.findings.append(("git", f"{len(changed)} uncommitted change(s)"))
        if untracked:
            self.findings.append(("git", f"{len(untracked)} untracked file(s)"))

    def lint(self) -> None:
        emit(type="step", title="Lint")
        command = self.inputs["lint"]
        if command == "auto":
            if not (self.repo / "pyproject.toml").exists():
                emit(type="message", text="no Python project found; lint skipped")
                return
            ruff = self.repo / ".venv" / "bin" / "ruff"
            command = [
                str(ruff) if ruff.exists() else "ruff",
                "check",
                "--output-format",
                "concise",
                ".",
            ]
        code, out = self.sh(command)
        if code is None:
            self.findings.append(("lint", out.strip()))
        elif code != 0:
            count = (
                len([line for line in out.splitlines() if re.match(r"^\S+:\d+:\d+: ", line)])
                or "some"
            )
            self.findings.append(("lint", f"{count} lint problem(s)"))

    def tests(self) -> None:
        emit(type="step", title="Tests")
        command = self.inputs["tests"]
        if command == "auto":
            pkg = self.repo / "package.json"
            if (self.repo / "tests").is_dir() or (self.repo / "pytest.ini").exists():
                command = [self.python(), "-m", "pytest", "-q", "-x", "--no-header"]
            elif pkg.exists() and "test" in json.loads(pkg.read_text()).get("scripts", {}):
                command = ["npm", "test", "--silent"]
            else:
                emit(type="message", text="no test suite found")
                self.findings.append(("tests", "no test suite found"))
                return
        code, out = self.sh(command)
        tail = out.strip().splitlines()[-1:] or [""]
        if code != 0:
            self.findings.append(("tests", f"tests failing: {tail[0][:200]}"))
        else:
            emit(type="message", text=f"tests pass: {tail[0][:200]}")

    def outdated(self) -> None:
        emit(type="step", title="Outdated dependencies")
        index = self.inputs["index_url"].rstrip("/")
        deps = declared_dependencies(self.repo)
        if not deps:
            emit(type="message", text="no declared Python dependencies")
            return
        behind = []
        for name, version in sorted(deps.items()):
            try:
                with urllib.request.urlopen(f"{index}/{name}/json", timeout=10) as resp:
                    latest = json.load(resp)["info"]["version"]
            except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
                emit(type="message", level="warning", text=f"{name}: index lookup failed ({exc})")
                continue
            if version and release(latest)[:2] > release(version)[:2]:
                behind.append(f"{name} {version} → {latest}")
        emit(type="message", text=f"checked {len(deps)} dependencies; {len(behind)} behind")
        for item in behind:
            self.findings.append(("outdated", item))


def release(version: str) -> tuple[int, ...]:
    parts = re.match(r"^(\d+(?:\.\d+)*)", version)
    return tuple(int(p) for p in parts.group(1).split(".")) if parts else (0,)


_REQ = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:(==|>=|~=)\s*([0-9][^,;\s]*))?"
)


def declared_dependencies(repo: Path) -> dict[str, str | None]:
    """Package → pinned or minimum version, from pyproject.toml and requirements*.txt."""
    specs: list[str] = []
    pyproject = repo / "pyproject.toml"
    if pyproject.exists():
        data = tomllib.loads(pyproject.read_text())
        specs += data.get("project", {}).get("dependencies", [])
    for req in sorted(repo.glob("requirements*.txt")):
        specs += [
            line
            for line in req.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "-"))
        ]
    out: dict[str, str | None] = {}
    for spec in specs:
        m = _REQ.match(spec)
        if m:
            out[m.group(1).lower()] = m.group(3)
    return out


def main() -> int:
    ctx = json.loads(sys.stdin.readline())
    check = Check(ctx)
    if not check.repo.is_dir():
        emit(type="finished", status="failed", summary=f"repository {check.repo} not found")
        return 1
    emit(type="message", text=f"checking {check.repo}")
    if check.want("git"):
        check.git()
    if check.want("lint") and check.inputs["lint"] != "none":
        check.lint()
    if check.want("tests") and check.inputs["tests"] != "none":
        check.tests()
    if check.want("outdated") and check.inputs["index_url"] != "none":
        check.outdated()
    report = "\n".join(f"- [{kind}] {text}" for kind, text in check.findings) or "- no findings"
    emit(type="artifact", kind="report", title="Health report", content=report)
    failing = [f for f in check.findings if f[0] in check.inputs["fail_on"]]
    kinds = sorted({k for k, _ in check.findings})
    summary = f"{len(check.findings)} finding(s)" + (f" ({', '.join(kinds)})" if kinds else "")
    emit(type="finished", status="failed" if failing else "succeeded", summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
