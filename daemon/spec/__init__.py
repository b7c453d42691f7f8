"""The file formats nightshift reads: automations and skills, as pydantic models."""

from ._positions import NotText, compose, key_line, read_text
from .automation import (
    AlertmanagerTrigger,
    Automation,
    BuiltinAgent,
    ClaudeAgent,
    CodexAgent,
    CronTrigger,
    DateTrigger,
    EventTrigger,
    FileTrigger,
    GitHubTrigger,
    IntervalTrigger,
    ManualTrigger,
    MisfirePolicy,
    Policies,
    RetryPolicy,
    ScheduleTrigger,
    ScriptAgent,
    Trigger,
    WebhookTrigger,
    describe_trigger,
)
from .documents import validate_document
from .inputs import parse_key_values
from .matchers import parse_matcher
from .schema import schemas, write_schemas
from .skill import MANIFEST_NAME, InputSpec, Permissions, Skill, SkillFrontMatter, SkillManifest

__all__ = [
    "MANIFEST_NAME",
    "AlertmanagerTrigger",
    "Automation",
    "BuiltinAgent",
    "ClaudeAgent",
    "CodexAgent",
    "CronTrigger",
    "DateTrigger",
    "EventTrigger",
    "FileTrigger",
    "GitHubTrigger",
    "InputSpec",
    "IntervalTrigger",
    "ManualTrigger",
    "MisfirePolicy",
    "NotText",
    "Permissions",
    "Policies",
    "RetryPolicy",
    "ScheduleTrigger",
    "ScriptAgent",
    "Skill",
    "SkillFrontMatter",
    "SkillManifest",
    "Trigger",
    "WebhookTrigger",
    "compose",
    "describe_trigger",
    "key_line",
    "parse_key_values",
    "parse_matcher",
    "read_text",
    "schemas",
    "validate_document",
    "write_schemas",
]
