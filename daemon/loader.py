"""Reads `automations/` and `skills/`, validates everything at once, and keeps the last good set.

The loader holds one state per file. A refresh re-reads only the changed files, then recomputes
the active catalog in memory: a file whose new version is broken keeps its last good version
active (and reports the problem), a name claimed by two files stays with its current owner, and
a deleted file's automation goes away, so a rename never leaves a duplicate schedule.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import structlog

from .errors import Problem
from .spec import (
    MANIFEST_NAME,
    Automation,
    NotText,
    Skill,
    SkillFrontMatter,
    SkillManifest,
    compose,
    key_line,
    read_text,
    validate_document,
)

YAML_SUFFIXES = (".yaml", ".yml")

log = structlog.get_logger(__name__)


def _read(path: Path) -> str | Problem:
    """A file's text, or the problem that stops it being read."""
    try:
        return read_text(path)
    except NotText as exc:
        return Problem(path, exc.line, "", str(exc))
    except OSError as exc:
        return Problem(path, None, "", f"cannot read: {exc.strerror}")


def _unexpected(path: Path, exc: BaseException) -> Problem:
    """A fault no rule foresaw while reading one file: that file's problem, never the
    daemon's end (the detail goes to the log)."""
    log.error("file could not be checked", path=str(path), exc_info=exc)
    return Problem(path, None, "", f"could not be checked ({type(exc).__name__}: {exc})"[:300])


@dataclass(frozen=True)
class Catalog:
    """The active automations and skills, and every current problem."""

    automations: Mapping[str, Automation]
    sources: Mapping[str, Path]
    skills: Mapping[str, Skill]
    problems: tuple[Problem, ...]
    generation: int = 0


@dataclass
class _AutomationFile:
    parsed: Automation | None = None
    problems: list[Problem] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    last_good: Automation | None = None
    last_good_lines: dict[str, int] = field(default_factory=dict)
    # skill and inputs of a file that failed schema validation, still checked for references
    raw_refs: tuple[str, dict[str, Any]] | None = None


@dataclass
class _SkillDir:
    parsed: Skill | None = None
    problems: list[Problem] = field(default_factory=list)
    last_good: Skill | None = None


@dataclass
class ParsedAutomation:
    """One automation file read: the model (when valid), its problems and where fields are."""

    model: Automation | None
    problems: list[Problem]
    lines: dict[str, int]
    raw_refs: tuple[str, dict[str, Any]] | None = None


def parse_automation(path: Path) -> ParsedAutomation:
    """Parse and schema-validate one automation file; never raises."""
    try:
        return _parse_automation(path)
    except Exception as exc:
        return ParsedAutomation(None, [_unexpected(path, exc)], {})


def _parse_automation(path: Path) -> ParsedAutomation:
    text = _read(path)
    if isinstance(text, Problem):
        return ParsedAutomation(None, [text], {})
    model, root, problems = validate_document(Automation, path, text)
    lines: dict[str, int] = {"skill": key_line(root, "skill") or 1}
    lines["inputs"] = key_line(root, "inputs") or lines["skill"]
    raw_refs = None
    inputs: dict[str, Any] = {}
    if model is not None:
        inputs = model.inputs
    elif root is not None:
        data = compose(text)[1]
        if isinstance(data, dict):
            if isinstance(data.get("inputs"), dict):
                inputs = data["inputs"]
            if isinstance(data.get("skill"), str):
                raw_refs = (data["skill"], inputs)
    for key in inputs:
        lines[f"inputs.{key}"] = key_line(root, "inputs", key) or lines["inputs"]
    return ParsedAutomation(model, problems, lines, raw_refs)


def parse_skill(folder: Path) -> tuple[Skill | None, list[Problem]]:
    """Parse `folder/SKILL.md` and its optional `nightshift.yaml`; never raises."""
    try:
        return _parse_skill(folder)
    except Exception as exc:
        return None, [_unexpected(folder / "SKILL.md", exc)]


def _parse_skill(folder: Path) -> tuple[Skill | None, list[Problem]]:
    skill_md = folder / "SKILL.md"
    text = _read(skill_md)
    if isinstance(text, Problem):
        return None, [text]
    if not text.startswith("---"):
        return None, [Problem(skill_md, 1, "", "missing YAML front matter (--- ... ---)")]
    head, sep, body = text[3:].partition("\n---")
    if not sep:
        return None, [Problem(skill_md, 1, "", "front matter is not closed with ---")]
    front, _, problems = validate_document(SkillFrontMatter, skill_md, head.lstrip("\n"), 1)
    if front is not None and front.name != folder.name:
        problems.append(
            Problem(skill_md, 2, "name", f"{front.name!r} must match the folder {folder.name!r}")
        )
    manifest = SkillManifest()
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.exists():
        mtext = _read(manifest_path)
        if isinstance(mtext, Problem):
            problems.append(mtext)
        else:
            parsed, root, mproblems = validate_document(SkillManifest, manifest_path, mtext)
            problems += mproblems
            if parsed is not None:
                manifest = parsed
                if manifest.entrypoint:
                    script = (folder / manifest.entrypoint).resolve()
                    line = key_line(root, "entrypoint")
                    if not script.is_relative_to(folder.resolve()):
                        problems.append(
                            Problem(manifest_path, line, "entrypoint", "must stay inside the skill")
                        )
                    elif not script.is_file():
                        problems.append(
                            Problem(
                                manifest_path,
                                line,
                                "entrypoint",
                                f"{manifest.entrypoint} does not exist",
                            )
                        )
    if problems or front is None:
        return None, problems
    return (
        Skill(
            name=front.name,
            description=front.description,
            path=folder.resolve(),
            body=body.lstrip("\n").split("\n", 1)[-1] if body.startswith("-") else body.lstrip(),
            manifest=manifest,
            front_matter=front,
        ),
        [],
    )


class Loader:
    """Loads and hot-reloads automations and skills from their folders."""

    def __init__(
        self,
        automations_dir: Path,
        skills_dir: Path,
        *,
        automation_files: Iterable[Path] | None = None,
        owners: Mapping[str, Path] | None = None,
    ) -> None:
        """`owners`: which file holds each name now (a running daemon's), so a name two
        files claim is blamed on the file that claimed it second, as the daemon blames it."""
        self.automations_dir = automations_dir.resolve()
        self.skills_dir = skills_dir.resolve()
        self._only_files = (
            {p.resolve() for p in automation_files} if automation_files is not None else None
        )
        self._automations: dict[Path, _AutomationFile] = {}
        self._skills: dict[Path, _SkillDir] = {}
        self._owners: dict[str, Path] = {k: v.resolve() for k, v in (owners or {}).items()}
        self._generation = 0
        self.catalog = Catalog(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}), ())

    # -- scanning -------------------------------------------------------------------------
    def _automation_paths(self) -> list[Path]:
        if self._only_files is not None:
            return sorted(self._only_files)
        found: list[Path] = []
        stack = [self.automations_dir]  # already resolved: children need no resolve() each
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.name.endswith(YAML_SUFFIXES) and entry.is_file():
                    found.append(Path(entry.path))
        return sorted(found)

    def _skill_dirs(self) -> list[Path]:
        if not self.skills_dir.is_dir():
            return []
        return sorted(
            p.resolve()
            for p in self.skills_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".")
        )

    def load(self) -> Catalog:
        """Read everything from scratch."""
        # A bulk load allocates millions of short-lived YAML nodes while the set of kept models
        # grows; the cyclic GC would rescan that set again and again (~25% of a 10,000-file
        # load). Nothing here makes cycles that need collecting, so pause it for the load.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for folder in self._skill_dirs():
                self._read_skill(folder)
            for path in self._automation_paths():
                self._read_automation(path)
            return self._rebuild()
        finally:
            if was_enabled:
                gc.enable()

    def refresh(self, changed: Iterable[Path]) -> Catalog:
        """Re-read only what `changed` touches (files added, edited or deleted)."""
        for raw in changed:
            path = Path(raw).resolve()
            if path.is_relative_to(self.skills_dir) and path != self.skills_dir:
                rel = path.relative_to(self.skills_dir)
                folder = self.skills_dir / rel.parts[0]
                if folder.is_dir() and not folder.name.startswith("."):
                    self._read_skill(folder)
                else:
                    self._skills.pop(folder, None)
            elif path.suffix in YAML_SUFFIXES:
                if self._only_files is not None and path not in self._only_files:
                    continue
                if path.is_file():
                    self._read_automation(path)
                else:
                    self._automations.pop(path, None)
        return self._rebuild()

    def _read_automation(self, path: Path) -> None:
        state = self._automations.setdefault(path, _AutomationFile())
        parsed = parse_automation(path)
        state.parsed, state.problems, state.lines = parsed.model, parsed.problems, parsed.lines
        state.raw_refs = parsed.raw_refs

    def _read_skill(self, folder: Path) -> None:
        state = self._skills.setdefault(folder, _SkillDir())
        state.parsed, state.problems = parse_skill(folder)
        if state.parsed is not None:
            state.last_good = state.parsed

    # -- the active catalog ---------------------------------------------------------------
    def _rebuild(self) -> Catalog:
        problems: list[Problem] = []
        skills: dict[str, Skill] = {}
        for sstate in self._skills.values():
            problems += sstate.problems
            if sstate.last_good is not None:
                skills[sstate.last_good.name] = sstate.last_good

        # Current owners go first so a name stays where it is when a second file claims it.
        order = [p for p in self._owners.values() if p in self._automations]
        order += [p for p in sorted(self._automations) if p not in set(order)]
        active: dict[str, Automation] = {}
        owners: dict[str, Path] = {}
        for path in order:
            state = self._automations[path]
            problems += state.problems
            chosen: Automation | None = None
            if state.parsed is None and state.raw_refs is not None:
                try:
                    problems += self._check_refs(path, *state.raw_refs, None, state.lines, skills)
                except Exception as exc:
                    problems.append(_unexpected(path, exc))
            if state.parsed is not None:
                fresh = self._cross_check(path, state.parsed, state.lines, skills, owners)
                if fresh:
                    problems += fresh
                else:
                    chosen = state.parsed
                    state.last_good, state.last_good_lines = state.parsed, state.lines
            fallback = state.last_good
            if (
                chosen is None
                and fallback is not None
                and fallback is not state.parsed
                and not self._cross_check(path, fallback, state.last_good_lines, skills, owners)
            ):
                chosen = fallback
            if chosen is not None:
                active[chosen.name] = chosen
                owners[chosen.name] = path
        self._owners = owners
        self._generation += 1
        self.catalog = Catalog(
            automations=MappingProxyType(active),
            sources=MappingProxyType(owners),
            skills=MappingProxyType(skills),
            problems=tuple(problems),
            generation=self._generation,
        )
        return self.catalog

    @classmethod
    def _cross_check(
        cls,
        path: Path,
        automation: Automation,
        lines: dict[str, int],
        skills: Mapping[str, Skill],
        owners: Mapping[str, Path],
    ) -> list[Problem]:
        """Problems between files (names, skills, inputs); never raises."""
        try:
            out: list[Problem] = []
            other = owners.get(automation.name)
            if other is not None and other != path:
                out.append(
                    Problem(
                        path,
                        1,
                        "name",
                        f"automation {automation.name!r} is already defined in {other}",
                    )
                )
            entry = (
                (automation.agent.entrypoint or "-")
                if automation.agent.backend == "script"
                else None
            )
            return out + cls._check_refs(
                path, automation.skill, automation.inputs, entry, lines, skills
            )
        except Exception as exc:
            return [_unexpected(path, exc)]

    @staticmethod
    def _check_refs(
        path: Path,
        skill_name: str,
        inputs: dict[str, Any],
        entrypoint: str | None,
        lines: dict[str, int],
        skills: Mapping[str, Skill],
    ) -> list[Problem]:
        """Problems with the skill an automation names and the inputs it passes.

        `entrypoint` is the script override ("-" for the skill's own), or None for no script.
        """
        out: list[Problem] = []
        skill = skills.get(skill_name)
        if skill is None:
            known = ", ".join(sorted(skills)) or "none"
            msg = f"no skill named {skill_name!r} (skills: {known})"
            return [Problem(path, lines.get("skill"), "skill", msg)]
        for key, msg in skill.check_inputs(inputs, render_pending=True).items():
            line = lines.get(f"inputs.{key}", lines.get("inputs"))
            out.append(Problem(path, line, f"inputs.{key}", msg))
        if entrypoint is not None:
            entry = skill.manifest.entrypoint if entrypoint == "-" else entrypoint
            if not entry:
                msg = f"skill {skill.name!r} has no script entrypoint for the script backend"
                out.append(Problem(path, lines.get("skill"), "agent", msg))
            elif not (skill.path / entry).is_file():
                out.append(
                    Problem(path, lines.get("skill"), "agent.entrypoint", f"{entry} not found")
                )
        return out
