"""The file formats nightshift reads: automations and skills, as pydantic models."""

from ._positions import NotText, compose, key_line, read_text
from .agents import BuiltinAgent, ClaudeAgent, CodexAgent, ScriptAgent
from .automation import Automation, MisfirePolicy, Policies, RetryPolicy
from .documents import validate_document
from .inputs import parse_key_values
from .matchers import parse_matcher
from .schema import schemas, write_schemas
from .skill import MANIFEST_NAME, InputSpec, Permissions, Skill, SkillFrontMatter, SkillManifest
from .triggers import (
    AlertmanagerTrigger,
    CronTrigger,
    DateTrigger,
    EventTrigger,
    FileTrigger,
    GitHubMentionTrigger,
    GitHubTrigger,
    IntervalTrigger,
    ManualTrigger,
    ScheduleTrigger,
    Trigger,
    WebhookTrigger,
    describe_trigger,
)

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
    "GitHubMentionTrigger",
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
