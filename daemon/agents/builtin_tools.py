"""The built-in loop's tools as the model sees them (Chat Completions function schemas), and
how much of a tool's result goes back to it."""

from __future__ import annotations

from typing import Any

MAX_TOOL_OUTPUT = 8000  # characters of a tool's result the model is sent (the tail)

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "run_command",
            "description": "Run a shell command in the workspace.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file (workspace-relative, or a skill file).",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Create or replace a file in the workspace.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "apply_patch",
            "description": "Apply a unified diff (as `git diff` writes it) to the workspace's "
            "files; all hunks apply or none do.",
            "parameters": {
                "type": "object",
                "properties": {"patch": {"type": "string"}},
                "required": ["patch"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_files",
            "description": "Search the workspace's files for a regex.",
            "parameters": {
                "type": "object",
                "properties": {"pattern": {"type": "string"}},
                "required": ["pattern"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "request_approval",
            "description": "Ask a person before an elevated action (push, pull request, network…).",
            "parameters": {
                "type": "object",
                "properties": {"action": {"type": "string"}, "description": {"type": "string"}},
                "required": ["action", "description"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "post_update",
            "description": "Tell the people watching what is happening.",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "finish",
            "description": "End the task with a summary.",
            "parameters": {
                "type": "object",
                "properties": {
                    "summary": {"type": "string"},
                    "status": {"type": "string", "enum": ["succeeded", "failed"]},
                },
                "required": ["summary"],
            },
        },
    },
]


# The tools that touch the run's folder: they wait until its worktree is ready.
WORKSPACE_TOOLS = frozenset(
    {"run_command", "read_file", "write_file", "apply_patch", "search_files"}
)


def clip(text: str, limit: int = MAX_TOOL_OUTPUT) -> str:
    """`text`, or its tail with a note of how much was cut."""
    if len(text) <= limit:
        return text
    return f"[…{len(text) - limit} characters cut…]\n" + text[-limit:]
