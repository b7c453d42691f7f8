"""The file formats nightshift reads: automations and skills, as pydantic models."""

from .automation import (
    Automation,
    BuiltinAgent,
    ClaudeAgent,
    CodexAgent,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    ManualTrigger,
    MisfirePolicy,
    Policies,
    RetryPolicy,
    ScheduleTrigger,
    ScriptAgent,
    Trigger,
)
from .schema import schemas, write_schemas
from .skill import InputSpec, Permissions, Skill, SkillFrontMatter, SkillManifest

__all__ = [
    "Automation",
    "BuiltinAgent",
    "ClaudeAgent",
    "CodexAgent",
    "CronTrigger",
    "DateTrigger",
    "InputSpec",
    "IntervalTrigger",
    "ManualTrigger",
    "MisfirePolicy",
    "Permissions",
    "Policies",
    "RetryPolicy",
    "ScheduleTrigger",
    "ScriptAgent",
    "Skill",
    "SkillFrontMatter",
    "SkillManifest",
    "Trigger",
    "schemas",
    "write_schemas",
]
