"""Skills in the Agent Skills folder format, plus nightshift's typed sibling manifest.

`skills/<name>/SKILL.md` keeps to the open spec (front matter with exactly the spec's fields);
nightshift's typed inputs, permissions and script entry point live beside it in
`skills/<name>/nightshift.yaml`, which other Agent Skills clients simply ignore.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

SKILL_NAME_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
MANIFEST_NAME = "nightshift.yaml"


class SkillFrontMatter(BaseModel):
    """The SKILL.md front matter exactly as the Agent Skills specification allows it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64, pattern=SKILL_NAME_PATTERN)
    description: str = Field(min_length=1, max_length=1024)
    license: str | None = None
    compatibility: str | None = Field(None, max_length=500)
    metadata: dict[str, str] = Field(default_factory=dict)
    allowed_tools: str | None = Field(None, alias="allowed-tools")


InputType = Literal["string", "integer", "number", "boolean", "array", "object"]
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "string": TypeAdapter(str),
    "integer": TypeAdapter(int),
    "number": TypeAdapter(float),
    "boolean": TypeAdapter(bool),
    "array": TypeAdapter(list[Any]),
    "object": TypeAdapter(dict[str, Any]),
}


class InputSpec(BaseModel):
    """One typed input of a skill."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: InputType = "string"
    description: str = ""
    required: bool = False
    default: Any = None
    enum: list[Any] | None = None

    def coerce(self, value: Any) -> Any:
        """Validate (and coerce, e.g. "3" → 3 for integers) a value; raises ValueError.

        Text given for a typed input (`-i n=3`, `-i tags=[a, b]`) is read as a YAML scalar or
        collection; text given for a string input stays exactly as typed (`3.10` is not 3.1).
        """
        if self.type != "string" and isinstance(value, str):
            # unreadable text stays text: the adapter below says what it expected
            with contextlib.suppress(yaml.YAMLError):
                value = yaml.safe_load(value) if value.strip() else value
        try:
            out = _ADAPTERS[self.type].validate_python(value)
        except PydanticValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"]) from None
        if self.enum is not None and out not in self.enum:
            raise ValueError(f"must be one of {self.enum}")
        return out


class Permissions(BaseModel):
    """What the skill may do; actions listed in `approval_required` wait for a person."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: bool = False
    github: bool = Field(
        False, description="the run gets GITHUB_API_URL and GITHUB_TOKEN from the daemon's config"
    )
    approval_required: list[str] = Field(
        default_factory=list, description="actions that need approval, e.g. push, pull_request"
    )


class SkillManifest(BaseModel):
    """`nightshift.yaml` beside SKILL.md: typed inputs, permissions, script entry point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entrypoint: str | None = Field(
        None, description="script run by the script backend, relative to the skill folder"
    )
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    permissions: Permissions = Permissions()


@dataclass(frozen=True)
class Skill:
    """A loaded skill: its front matter, manifest, instructions and folder."""

    name: str
    description: str
    path: Path
    body: str
    manifest: SkillManifest = field(default_factory=SkillManifest)
    front_matter: SkillFrontMatter | None = None

    @property
    def entrypoint(self) -> Path | None:
        """Absolute path of the script, when the skill has one."""
        return self.path / self.manifest.entrypoint if self.manifest.entrypoint else None

    def check_inputs(self, given: dict[str, Any], *, render_pending: bool) -> dict[str, str]:
        """Problems with `given` inputs, keyed by input name ('' for general problems).

        With `render_pending`, template strings are not type-checked (they render per event).
        """
        from .templates import is_template

        problems: dict[str, str] = {}
        for key, value in given.items():
            spec = self.manifest.inputs.get(key)
            if spec is None:
                known = ", ".join(sorted(self.manifest.inputs)) or "none"
                problems[key] = f"skill {self.name!r} has no input {key!r} (inputs: {known})"
                continue
            if render_pending and isinstance(value, str) and is_template(value):
                continue
            try:
                spec.coerce(value)
            except ValueError as exc:
                problems[key] = f"{exc} (skill {self.name!r} expects {spec.type})"
        for key, spec in self.manifest.inputs.items():
            if spec.required and spec.default is None and key not in given:
                problems[key] = f"required input of skill {self.name!r} is missing"
        return problems

    def resolve_inputs(self, given: dict[str, Any]) -> dict[str, Any]:
        """Rendered inputs with defaults filled in and types coerced; raises ValueError."""
        problems = self.check_inputs(given, render_pending=False)
        if problems:
            raise ValueError("; ".join(f"{k}: {v}" for k, v in problems.items()))
        out = {k: spec.default for k, spec in self.manifest.inputs.items()}
        out.update({k: self.manifest.inputs[k].coerce(v) for k, v in given.items()})
        return out
