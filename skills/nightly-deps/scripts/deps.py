#!/usr/bin/env python3
"""nightly-deps: grouped dependency updates, tested, proposed as draft pull requests.

Python: pinned requirement files; pyproject dependencies locked by uv (`uv.lock`) or pip-tools
(`requirements.in` → `requirements.txt`). npm: package.json with package-lock.json. Every
group is applied on its own branch from the base, its lock regenerated, its tests run; one
approval covers the green groups; steering while it waits re-plans and asks again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from packaging.version import InvalidVersion, Version

from daemon.github import GitHubClient, GitHubError, LimitReached, WriteLimits, push_branch
from daemon.skillkit import SkillRun, find_test_command

Kind = Literal["patch", "minor", "major"]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?\s*==\s*"
                 r"(?P<version>[0-9][^\s;#]*)", re.M)  # fmt: skip
NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)", re.M)
NOTES_KEYS = ("changelog", "release notes", "changes", "history", "releases")


@dataclass(frozen=True)
class Update:
    ecosystem: Literal["python", "npm"]
    name: str
    current: str
    new: str
    kind: Kind
    file: str
    notes: str
    lock: Literal["", "uv", "pip-tools", "npm"] = ""  # who rewrites the lock after the edit

    def row(self) -> str:
        return f"| `{self.name}` | {self.current} | {self.new} | {self.kind} | {self.notes} |"


@dataclass
class Group:
    title: str
    slug: str
    updates: list[Update]
    outcome: str = ""
    tested: bool = False

    @property
    def branch(self) -> str:
        return f"nightshift/deps/{self.slug}"

    def line(self) -> str:
        names = ", ".join(f"{u.name} {u.current} → {u.new}" for u in self.updates)
        return f"*{self.title}*: {names}" + (f" — {self.outcome}" if self.outcome else "")


@dataclass
class Plan:
    only_patch: bool = False
    skip: set[str] = field(default_factory=set)

    def steer(self, texts: list[str]) -> list[str]:
        taken = []
        for text in texts:
            low = text.lower()
            if "only patch" in low or "patch only" in low:
                self.only_patch = True
                taken.append("only patch versions")
            elif "no major" in low:
                self.skip.add("*major*")
                taken.append("no major updates")
            for name in re.findall(r"\bskip\s+([A-Za-z0-9@/._-]+)", text, re.I):
                self.skip.add(name.lower())
                taken.append(f"skip {name}")
        return taken


# -- versions -------------------------------------------------------------------------------
def _kind(old: tuple[int, ...], new: tuple[int, ...]) -> Kind:
    if new[0] != old[0]:
        return "major"
    return "minor" if new[1:2] != old[1:2] else "patch"


def choose(
    current: tuple[int, ...], available: list[tuple[int, ...]], only_patch: bool
) -> list[tuple[tuple[int, ...], Kind]]:
    """The updates Renovate would propose: newest in the same major; newest major alone."""
    newer = [v for v in available if v > current]
    out: list[tuple[tuple[int, ...], Kind]] = []
    same = [v for v in newer if v[0] == current[0] and (not only_patch or v[1] == current[1])]
    if same:
        out.append((max(same), _kind(current, max(same))))
    majors = [v for v in newer if v[0] > current[0]]
    if majors and not only_patch:
        out.append((max(majors), "major"))
    return out


def py_version(text: str) -> tuple[int, ...] | None:
    try:
        v = Version(text)
    except InvalidVersion:
        return None
    if v.is_prerelease or v.is_devrelease:
        return None
    return (*v.release, 0, 0)[:3]


def npm_version(text: str) -> tuple[int, ...] | None:
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", text.strip())
    return tuple(int(x) for x in m.groups()) if m else None


# -- scanning -------------------------------------------------------------------------------
class Index:
    def __init__(self, run: SkillRun) -> None:
        self.run = run
        self.pypi = run.inputs["pypi_url"].rstrip("/")
        self.npm = run.inputs["npm_registry"].rstrip("/") + "/"
        self.http = httpx.Client(timeout=20, follow_redirects=True)
        self.cache: dict[str, Any] = {}

    def get(self, url: str) -> Any:
        if url not in self.cache:
            try:
                resp = self.http.get(url)
                self.cache[url] = resp.json() if resp.is_success else None
            except (httpx.HTTPError, ValueError) as exc:
                self.run.message(f"index lookup failed: {url}: {type(exc).__name__}", "warning")
                self.cache[url] = None
        return self.cache[url]

    def python(self, name: str) -> tuple[list[tuple[int, ...]], dict[tuple[int, ...], str], str]:
        data = self.get(f"{self.pypi}/{name}/json") or {}
        found: dict[tuple[int, ...], str] = {}
        for text, files in (data.get("releases") or {}).items():
            v = py_version(text)
            if v and not all(f.get("yanked") for f in files or [{}]):
                found[v] = text
        urls = (data.get("info") or {}).get("project_urls") or {}
        notes = next((u for k, u in urls.items() if k.lower() in NOTES_KEYS), "")
        return sorted(found), found, notes or f"https://pypi.org/project/{name}/{{version}}/"

    def node(self, name: str) -> tuple[list[tuple[int, ...]], dict[tuple[int, ...], str], str]:
        data = self.get(self.npm + name.replace("/", "%2f")) or {}
        found = {v: t for t in (data.get("versions") or {}) if (v := npm_version(t))}
        repo = str((data.get("repository") or {}).get("url", ""))
        m = re.search(r"github\.com[/:]([^/]+/[^/.]+)", repo)
        notes = f"https://github.com/{m.group(1)}/releases" if m else ""
        return (
            sorted(found),
            found,
            notes or f"https://www.npmjs.com/package/{name}/v/{{version}}",
        )


def python_updates(workdir: Path, index: Index, plan: Plan) -> list[Update]:
    """Pinned requirement files; pip-tools locks (`requirements*.in` → `.txt`); uv.lock."""
    wanted: list[tuple[str, str, str, Literal["", "uv", "pip-tools"]]] = []
    for req in sorted(workdir.glob("requirements*.txt")):
        pins = [(m["name"], m["version"]) for m in PIN.finditer(req.read_text())]
        source = req.with_suffix(".in")
        if source.exists():  # a pip-tools lock: update what its source names, by re-compiling
            direct = {_key(m["name"]) for m in NAME.finditer(source.read_text())}
            wanted += [(n, v, source.name, "pip-tools") for n, v in pins if _key(n) in direct]
        else:
            wanted += [(n, v, req.name, "") for n, v in pins]
    pyproject, uv_lock = workdir / "pyproject.toml", workdir / "uv.lock"
    if pyproject.exists() and uv_lock.exists():
        deps = tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies", [])
        locked = {
            _key(pkg["name"]): pkg["version"]
            for pkg in tomllib.loads(uv_lock.read_text()).get("package", [])
        }
        for spec in deps:
            if (m := NAME.match(spec)) and _key(m["name"]) in locked:
                wanted.append((m["name"], locked[_key(m["name"])], "pyproject.toml", "uv"))
    out = []
    for name, version, file, lock in wanted:
        current = py_version(version)
        if current is None or name.lower() in plan.skip:
            continue
        available, texts, notes = index.python(name)
        for new, kind in choose(current, available, plan.only_patch):
            text = texts[new]
            out.append(
                Update("python", name, version, text, kind, file, notes.format(version=text), lock)
            )
    return out


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def npm_updates(workdir: Path, index: Index, plan: Plan) -> list[Update]:
    package = workdir / "package.json"
    if not package.exists() or not (workdir / "package-lock.json").exists():
        return []
    data = json.loads(package.read_text())
    out = []
    for section in ("dependencies", "devDependencies"):
        for name, spec in (data.get(section) or {}).items():
            m = re.fullmatch(r"([\^~]?)(\d+\.\d+\.\d+)", str(spec))
            if not m or name.lower() in plan.skip:
                continue
            current = npm_version(m.group(2))
            assert current is not None
            available, texts, notes = index.node(name)
            for new, kind in choose(current, available, plan.only_patch):
                out.append(
                    Update(
                        "npm",
                        name,
                        str(spec),
                        m.group(1) + texts[new],
                        kind,
                        "package.json",
                        notes.format(version=texts[new]),
                    )
                )
    return out


def group(updates: list[Update], plan: Plan) -> list[Group]:
    groups: list[Group] = []
    for eco in ("npm", "python"):
        label = "npm" if eco == "npm" else "Python"
        minor = [u for u in updates if u.ecosystem == eco and u.kind != "major"]
        if minor:
            title = f"{label} patch updates" if plan.only_patch else f"{label} non-major updates"
            groups.append(Group(title, f"{eco}-non-major", minor))
        if "*major*" in plan.skip:
            continue
        for u in updates:
            if u.ecosystem == eco and u.kind == "major":
                major = re.match(r"[\^~]?(\d+)", u.new)
                n = major.group(1) if major else u.new
                slug = re.sub(r"[^a-z0-9]+", "-", f"{eco}-{u.name}-{n}".lower()).strip("-")
                groups.append(Group(f"{label}: {u.name} {n}", slug, [u]))
    return groups


# -- applying -------------------------------------------------------------------------------
class Repo:
    def __init__(self, run: SkillRun) -> None:
        self.run = run
        self.dir = run.workdir

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.dir), *args], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise RuntimeError(f"git {args[0]}: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    def apply(self, g: Group, base: str, registry: str) -> str | None:
        """Edit, re-lock and commit the group on its branch; None, or why it cannot."""
        self.git("checkout", "--quiet", "-B", g.branch, base)
        for u in g.updates:
            path = self.dir / u.file
            text = path.read_text()
            if u.ecosystem == "npm":
                data = json.loads(text)
                for section in ("dependencies", "devDependencies"):
                    if u.name in (data.get(section) or {}):
                        data[section][u.name] = u.new
                path.write_text(json.dumps(data, indent=2) + "\n")
            else:
                # A plain pin is the version itself; with a lock, only an exact pin in the
                # source (`name==x`) has to move for the lock tool to reach the new version.
                op = "==|>=|~=" if not u.lock else "=="
                current = re.escape(u.current) if not u.lock else r"[0-9][^\s,;\"'#]*"
                pattern = re.compile(
                    rf"(?<![\w.-])({re.escape(u.name)}(\[[^\]]*\])?\s*(?:{op})\s*)"
                    rf"{current}(?![\w.])",
                    re.I,
                )
                path.write_text(pattern.sub(rf"\g<1>{u.new}", text, count=1))
        for problem in self.relock(g, registry):
            return problem
        self.git("add", "--all")
        rows = "\n".join(f"- {u.name} {u.current} → {u.new}" for u in g.updates)
        self.git("commit", "--quiet", "--no-verify", "-m", f"Update {g.title}\n\n{rows}")
        return None

    def relock(self, g: Group, registry: str) -> list[str]:
        steps: list[list[str]] = []
        if any(u.ecosystem == "npm" for u in g.updates):
            steps.append(["npm", "install", "--package-lock-only", "--ignore-scripts",
                          "--no-audit", "--no-fund", "--registry", registry])  # fmt: skip
        uv = [u for u in g.updates if u.lock == "uv"]
        if uv:
            if (exe := tool("uv")) is None:
                return ["uv.lock needs uv, which is not installed"]
            steps.append([exe, "lock", *(f"--upgrade-package={u.name}=={u.new}" for u in uv)])
        for source in sorted({u.file for u in g.updates if u.lock == "pip-tools"}):
            if (exe := tool("pip-compile")) is None:
                return [f"{source} is compiled by pip-tools, which is not installed"]
            ups = [f"--upgrade-package={u.name}=={u.new}" for u in g.updates if u.file == source]
            steps.append([exe, "--quiet", "--no-strip-extras", *ups, source])
        for argv in steps:
            done = self.run.sh(argv, cwd=self.dir, timeout=900)
            if done.returncode != 0:
                name = Path(argv[0]).name
                return [f"`{name} {argv[1]}` failed: {done.stderr.strip()[-200:]}"]
        return []


def tool(name: str) -> str | None:
    """A lock tool: beside this Python first (nightshift's own venv), then on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def main() -> int:
    run = SkillRun.start()
    inputs = run.inputs
    repo_name = inputs["repository"]
    if not repo_name:
        run.finish("failed", "set the `repository` input (owner/name) for the pull requests")
        return 0
    repo, index, plan = Repo(run), Index(run), Plan(skip={n.lower() for n in inputs["ignore"]})
    home = repo.git("rev-parse", "--abbrev-ref", "HEAD").strip()
    base = repo.git("rev-parse", "HEAD").strip()
    argv = find_test_command(run.workdir, inputs["test_command"])
    gh = GitHubClient.from_env(on_wait=lambda s, why: run.message(f"waiting {s:.0f}s: {why}"))
    try:
        plan.steer(run.new_steering())
        for _round in range(3):
            run.step("Looking for outdated dependencies")
            updates = python_updates(run.workdir, index, plan) + npm_updates(
                run.workdir, index, plan
            )
            groups = group(updates, plan)
            for g in groups:
                found = gh.pulls(repo_name, state="open", head=f"{repo_name.split('/')[0]}:"
                                 f"{g.branch}", limit=1)  # fmt: skip
                if found:
                    g.outcome = f"skipped: #{found[0].number} is open"
                    continue
                run.step(f"Trying {g.title}", ", ".join(u.name for u in g.updates))
                problem = repo.apply(g, base, index.npm)
                if problem is None and argv is not None:
                    passed = run.sh(argv, cwd=run.workdir, isolated=True).returncode == 0
                    problem = None if passed else "tests fail"
                g.tested = problem is None
                g.outcome = problem or ("tests pass" if argv else "no tests found")
            repo.git("checkout", "--quiet", "--force", home)
            plan_text = "\n".join(g.line() for g in groups) or "everything is up to date"
            run.artifact("report", "Dependency update plan", content=plan_text)
            ready = [g for g in groups if g.tested]
            if not ready:
                run.finish("succeeded", f"no pull request to open\n{plan_text}")
                return 0
            decision = run.approve(
                "pull_request",
                f"Open {len(ready)} draft pull request(s) on {repo_name}?\n{plan_text}",
            )
            if not decision.approved:
                why = f": {decision.reason}" if decision.reason else ""
                run.finish("succeeded", f"not proposed{why}\n{plan_text}")
                return 0
            taken = plan.steer(run.new_steering())
            if not taken:
                break
            run.message("re-planning as steered: " + "; ".join(taken))
        else:
            run.finish("failed", "the plan kept changing; nothing proposed")
            return 0
        return propose(run, gh, repo_name, ready, groups, inputs, argv)
    except (GitHubError, RuntimeError) as exc:
        run.finish("failed", str(exc))
        return 0
    finally:
        gh.close()


def propose(
    run: SkillRun,
    gh: GitHubClient,
    repo_name: str,
    ready: list[Group],
    groups: list[Group],
    inputs: dict[str, Any],
    argv: list[str] | None,
) -> int:
    limits = WriteLimits(prs_per_hour=inputs["prs_per_hour"], open_prs=inputs["open_prs"])
    token = os.environ.get("GITHUB_TOKEN")
    for g in ready:
        try:
            limits.check_pull_request(gh, repo_name)
        except LimitReached as exc:
            g.outcome = f"deferred to the next run ({exc})"
            continue
        push_branch(run.workdir, g.branch, token=token, ref=g.branch)
        tests = f"`{' '.join(argv[-4:])}` passed on this branch." if argv else "No tests found."
        body = (
            f"Updates {len(g.updates)} package(s).\n\n"
            "| Package | From | To | Update | Release notes |\n|---|---|---|---|---|\n"
            + "\n".join(u.row() for u in g.updates)
            + f"\n\n{tests}\n\n_Opened by nightshift after approval in the run's thread._"
        )
        pull = gh.create_pull(
            repo_name,
            title=f"Update {g.title}",
            head=g.branch,
            base=run.inputs["base_branch"],
            body=body,
        )
        g.outcome = f"opened #{pull.number}"
        run.artifact("link", f"#{pull.number} Update {g.title}", url=pull.html_url)
    summary = "\n".join(g.line() for g in groups)
    opened = sum(1 for g in groups if g.outcome.startswith("opened"))
    run.finish("succeeded", f"{opened} draft pull request(s) opened\n{summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
