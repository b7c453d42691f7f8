"""JSON Schema for editors, generated from the models (the models are the contract)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .automation import Automation
from .skill import SkillManifest

SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "automation.schema.json": Automation,
    "skill-manifest.schema.json": SkillManifest,
}


def schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema for each YAML format nightshift reads."""
    out: dict[str, dict[str, Any]] = {}
    for filename, model in SCHEMA_FILES.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        out[filename] = schema
    return out


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema into `directory`; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in schemas().items():
        path = directory / filename
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
