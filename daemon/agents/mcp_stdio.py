"""nightshift's tools for coding-agent CLIs, as a stdio MCP server.

Codex and Claude Code start this file (by path, so it imports nothing of the daemon and starts
in tens of milliseconds) as an MCP server. Each `tools/call` is forwarded as one JSON line over
the Unix socket named on the command line to the run that started the CLI, which answers once
a person has decided; the answer goes back to the CLI as the tool's result. Standard library
only, on purpose.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

TOOLS: list[dict[str, Any]] = [
    {
        "name": "request_approval",
        "description": (
            "Ask a person before an elevated action (pushing, opening a pull request, network "
            "access, restarting a service). Returns 'approved' or 'denied: <reason>'. Wait for "
            "the answer; on a denial carry on without the action."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "action": {"type": "string", "description": "push, pull_request, network, …"},
                "description": {"type": "string", "description": "what exactly, and why"},
            },
            "required": ["action", "description"],
        },
    },
    {
        "name": "post_update",
        "description": "Tell the people watching the run what is happening (one short line).",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    },
    {
        "name": "permission",
        "description": "Decides a permission prompt (used by the CLI, not the model).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "tool_name": {"type": "string"},
                "input": {"type": "object"},
                "tool_use_id": {"type": "string"},
            },
            "required": ["tool_name", "input"],
        },
    },
]
for _tool in TOOLS:
    # Asking is harmless in itself; the decision is the person's. Without these hints a CLI
    # with approvals turned off refuses to call the tool at all.
    _tool["annotations"] = {"readOnlyHint": True, "destructiveHint": False, "openWorldHint": False}


def _reply(msg_id: Any, result: Any = None, error: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id}
    body.update({"error": error} if error is not None else {"result": result})
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: mcp_stdio.py SOCKET\n")
        return 2
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(argv[1])
    replies = conn.makefile("r", encoding="utf-8")
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        method, msg_id = msg.get("method"), msg.get("id")
        if msg_id is None:
            continue  # a notification
        if method == "initialize":
            version = (msg.get("params") or {}).get("protocolVersion", "2025-06-18")
            _reply(
                msg_id,
                {
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "nightshift", "version": "1"},
                },
            )
        elif method == "tools/list":
            _reply(msg_id, {"tools": TOOLS})
        elif method == "tools/call":
            params = msg.get("params") or {}
            request = {"tool": params.get("name"), "arguments": params.get("arguments") or {}}
            conn.sendall((json.dumps(request) + "\n").encode())
            answer = replies.readline()
            if not answer:
                _reply(msg_id, error={"code": -32000, "message": "nightshift went away"})
                return 1
            text = json.loads(answer).get("text", "")
            _reply(msg_id, {"content": [{"type": "text", "text": text}], "isError": False})
        elif method == "ping":
            _reply(msg_id, {})
        else:
            _reply(msg_id, error={"code": -32601, "message": f"unknown method {method}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
