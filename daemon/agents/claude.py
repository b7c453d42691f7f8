"""The Claude Code backend: `claude -p` with stream-json in and out, in the run's worktree.

The task goes in as the first user message on stdin, and stdin stays open: a steering message
is one more user line. Claude Code takes a line that arrives mid-turn into the turn under way
(before its next model call) and a line that arrives after a turn as a new turn of the same
session, so the context is kept either way. `--replay-user-messages` echoes every line once it
is taken; the run ends (stdin closed) at a `result` once every line written has been taken.

Permissions are the automation's `allow` / `ask` / `deny` rules, passed as settings (the
repository's own `.claude` settings are not loaded: a repository must not widen its own
agent's rights). An `ask` goes through nightshift's MCP `permission` tool and becomes an
approval request in the thread; a rule's refusal shows up in `result.permission_denials`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import BackendError
from ..runs import Command, FileChange, Message, RunStatus, Usage
from ..spec import ClaudeAgent
from ..workspace import sandbox
from .base import RunContext
from .cli import CliRun, base_env, find_cli, prompt

_EDITS = ("Edit", "MultiEdit", "Write", "NotebookEdit")


def _scoped(rule: str, tmp: Path) -> list[str]:
    """An allow rule as Claude Code gets it.

    A bare `Bash` is dropped: the sandbox allows every sandboxed command, and the bare rule
    would also allow one the agent asks to run unsandboxed. A bare file-editing tool is
    limited to the worktree (the CLI's cwd) and the run's private temp folder, since the
    sandbox covers Bash only; an edit elsewhere asks for approval instead.
    """
    if rule == "Bash":
        return []
    if rule not in _EDITS:
        return [rule]
    return [f"{rule}(./**)", f"{rule}(/{tmp}/**)"]  # `//path` is absolute in Claude's rules


def _user_line(text: str) -> bytes:
    line = {"type": "user", "message": {"role": "user", "content": text}}
    return (json.dumps(line) + "\n").encode()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [str(b.get("text", "")) for b in content or [] if isinstance(b, dict)]
    return "\n".join(p for p in parts if p)


class ClaudeRun(CliRun):
    """One run: one `claude -p` process, one session, steering on its stdin."""

    def __init__(
        self, ctx: RunContext, spec: ClaudeAgent, binary: str, private: Path, bwrap: str | None
    ) -> None:
        super().__init__(ctx)
        self._spec = spec
        self._binary = binary
        self._private = private
        self._bwrap = bwrap  # a working bubblewrap, or None: there is no sandbox here
        # TMPDIR is short, beside the MCP bridge: Claude's sandbox puts its proxy's Unix
        # sockets there, and a path under the state folder can pass AF_UNIX's 108 bytes.
        self._tmp = self.short_dir / "tmp"
        self._written = 0
        self._taken = 0
        self._cost = 0.0  # the session's cost and tokens the run was told of (`Usage`)
        self._tokens = 0
        self._stdin_open = False
        self._uses: dict[str, tuple[str, dict[str, Any]]] = {}
        self._decided: set[str] = set()  # tool uses a person decided on
        self._denied: set[str] = set()

    async def steer(self, text: str, by: str) -> None:
        if self._proc is None or self._proc.stdin is None or not self._stdin_open:
            raise BackendError("the agent has already finished")
        self._written += 1
        self._proc.stdin.write(_user_line(f"[steering from {by}] {text}"))
        await self._proc.stdin.drain()

    async def _permission(self, args: Any) -> str:
        tool, tool_input = str(args.get("tool_name", "")), args.get("input") or {}
        if tool == "Bash":
            action, what = "command", f"run `{tool_input.get('command', '')}`"
            if tool_input.get("dangerouslyDisableSandbox"):
                what += " outside the sandbox (network, writes anywhere)"
        else:
            action, what = tool, f"{tool} {json.dumps(tool_input)[:300]}"
        approved, reason = await self.approval(action, what)
        if tool_use := args.get("tool_use_id"):
            self._decided.add(str(tool_use))
            if not approved:
                self._denied.add(str(tool_use))
        if approved:
            return json.dumps({"behavior": "allow", "updatedInput": tool_input})
        return json.dumps({"behavior": "deny", "message": f"denied: {reason or 'no reason given'}"})

    def _settings(self) -> dict[str, Any]:
        spec, tmp = self._spec, self._tmp
        ours = ["mcp__nightshift__request_approval", "mcp__nightshift__post_update"]
        scoped = [rule for given in spec.allow for rule in _scoped(given, tmp)]
        if self._bwrap is None:  # no sandbox here: every command refused, or run as it is
            if spec.allow_unsandboxed:
                allow, deny = [*spec.allow, *ours], spec.deny
            else:
                allow, deny = [*scoped, *ours], [*spec.deny, "Bash"]
            return {
                "permissions": {"allow": allow, "ask": spec.ask, "deny": deny},
                "sandbox": {"enabled": False},
            }
        return {
            "permissions": {"allow": [*scoped, *ours], "ask": spec.ask, "deny": spec.deny},
            # Claude Code's own sandbox (bubblewrap) for Bash: no network, writes in the
            # worktree and the private TMPDIR. A command runs outside it only through a
            # permission prompt, i.e. an approval on record: one matching an `ask` rule
            # (excluded from the sandbox, so an approved push reaches the network) or one the
            # agent asks to run unsandboxed. Every other command runs sandboxed without asking.
            "sandbox": {
                "enabled": True,
                "failIfUnavailable": True,
                "autoAllowBashIfSandboxed": True,
                "allowUnsandboxedCommands": True,
                "excludedCommands": [
                    rule[5:-1] for rule in spec.ask if rule.startswith("Bash(") and rule[-1] == ")"
                ],
                "network": {"allowedDomains": []},
                "filesystem": {"allowWrite": [str(tmp)]},
                "bwrapPath": self._bwrap,  # the one nightshift checked works
            },
        }

    def _argv(self) -> list[str]:
        mcp = self.mcp_command()
        servers = {"mcpServers": {"nightshift": {"command": mcp[0], "args": mcp[1:]}}}
        settings = self._settings()
        argv = [
            self._binary,
            "-p",
            "--input-format", "stream-json",
            "--output-format", "stream-json",
            "--verbose",
            "--replay-user-messages",
            "--mcp-config", json.dumps(servers),
            "--strict-mcp-config",
            "--permission-prompt-tool", "mcp__nightshift__permission",
            "--settings", json.dumps(settings),
            "--setting-sources", "user",
        ]  # fmt: skip
        if self._spec.model:
            argv += ["--model", self._spec.model]
        if self._spec.max_cost_usd is not None:
            argv += ["--max-budget-usd", str(self._spec.max_cost_usd)]
        return argv

    def _env(self) -> dict[str, str]:
        home = self._private / "home"
        home.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(mode=0o700)
        env = base_env(self._ctx, home, self._tmp)
        env.update(
            {
                "CLAUDE_CONFIG_DIR": str(home / ".claude"),
                # No update checks, telemetry or error reporting: only the model API.
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "CLAUDE_CODE_MAX_RETRIES": str(self._spec.max_retries),
            }
        )
        if self._spec.base_url:
            env["ANTHROPIC_BASE_URL"] = self._spec.base_url
        if self._spec.api_key is not None:
            env["ANTHROPIC_API_KEY"] = self._spec.api_key.resolve()
        return env

    async def _drive(self) -> tuple[RunStatus, str]:
        if self._bwrap is None:
            text = (
                "no sandbox (bubblewrap) here: commands run unsandboxed (allow_unsandboxed)"
                if self._spec.allow_unsandboxed
                else "no sandbox (bubblewrap) here: Claude Code's commands are refused "
                "(install bubblewrap, or set allow_unsandboxed: true on the automation)"
            )
            self.emit(Message(level="warning", text=text))
        try:
            env = await asyncio.to_thread(self._env)
            proc = await self.spawn(self._argv(), env, stdin=asyncio.subprocess.PIPE)
            assert proc.stdin is not None
            stderr = asyncio.create_task(proc.stderr.read() if proc.stderr else asyncio.sleep(0))
            self._stdin_open = True
            self._written = 1
            proc.stdin.write(_user_line(prompt(self._ctx)))
            await proc.stdin.drain()
            last: dict[str, Any] | None = None
            async for line in self.json_lines(proc):
                if line.get("type") == "result":
                    last = line
                    self._result(line)
                    if self._taken >= self._written:
                        self._close_stdin()
                else:
                    self._line(line)
            self._close_stdin()
            code = await proc.wait()
            err = (await stderr or b"").decode(errors="replace").strip()
        finally:
            await asyncio.to_thread(shutil.rmtree, self._private, True)
        if last is None:
            return RunStatus.FAILED, f"claude exited with code {code}: {err[-500:] or 'no result'}"
        summary = str(last.get("result") or last.get("subtype") or "")
        if last.get("is_error") or last.get("subtype") != "success":
            return RunStatus.FAILED, f"claude: {summary}"[:2000]
        return RunStatus.SUCCEEDED, summary or "done"

    def _close_stdin(self) -> None:
        if self._stdin_open and self._proc is not None and self._proc.stdin is not None:
            self._stdin_open = False
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def _line(self, line: dict[str, Any]) -> None:
        kind, message = line.get("type"), line.get("message") or {}
        if kind == "system" and line.get("subtype") == "api_retry":
            self.emit(
                Message(
                    level="warning",
                    text=f"model API error {line.get('error_status') or ''}, "
                    f"retry {line.get('attempt')} of {line.get('max_retries')}",
                )
            )
        elif kind == "assistant":
            for block in message.get("content") or []:
                if block.get("type") == "text" and block.get("text"):
                    self.emit(Message(text=str(block["text"])))
                elif block.get("type") == "tool_use":
                    self._tool_use(block)
        elif kind == "user":
            content = message.get("content") or []
            if isinstance(content, str) or not any(
                isinstance(b, dict) and b.get("type") == "tool_result" for b in content
            ):
                self._taken += 1  # a line we wrote (the task, or steering) was taken
                return
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    self._tool_result(block, line.get("tool_use_result"))

    def _tool_use(self, block: dict[str, Any]) -> None:
        name, tool_input = str(block.get("name")), block.get("input") or {}
        self._uses[str(block.get("id"))] = (name, tool_input)
        if name in _EDITS and tool_input.get("file_path"):
            path = Path(str(tool_input["file_path"]))
            root = self._ctx.workdir.resolve()
            rel = path.relative_to(root) if path.is_relative_to(root) else path
            self.emit(FileChange(path=str(rel), change="modified"))

    def _tool_result(self, block: dict[str, Any], detail: Any) -> None:
        use_id = str(block.get("tool_use_id"))
        name, tool_input = self._uses.get(use_id, ("", {}))
        if name != "Bash" or use_id in self._denied:
            return  # a denied command was never run; the thread already shows the decision
        output = _text_of(block.get("content"))
        if isinstance(detail, dict) and ("stdout" in detail or "stderr" in detail):
            output = "\n".join(str(detail.get(k) or "") for k in ("stdout", "stderr")).strip()
        self.emit(
            Command(
                command=str(tool_input.get("command", "")),
                exit_code=1 if block.get("is_error") else 0,
                output_tail=output[-4000:],
            )
        )

    def _result(self, line: dict[str, Any]) -> None:
        # Each turn's result carries the session's totals so far (per model in `modelUsage`;
        # its `usage` can be all zeros, as on a budget stop): the run is told the growth.
        total = line.get("total_cost_usd")
        models = line.get("modelUsage") or {}
        tokens = sum(
            int(m.get("inputTokens") or 0) + int(m.get("outputTokens") or 0)
            for m in models.values()
            if isinstance(m, dict)
        )
        if isinstance(total, int | float) and total >= self._cost and tokens >= self._tokens:
            self.emit(Usage(tokens=tokens - self._tokens, cost_usd=float(total) - self._cost))
            self._cost, self._tokens = float(total), tokens
        for denial in line.get("permission_denials") or []:
            if str(denial.get("tool_use_id")) in self._decided:
                continue  # a person denied it; already in the thread
            tool_input = denial.get("tool_input") or {}
            what = tool_input.get("command") or json.dumps(tool_input)[:200]
            tool = denial.get("tool_name")
            self.emit(Message(level="warning", text=f"refused by policy: {tool} {what}"))


class ClaudeBackend:
    """Starts runs of Claude Code; per-run homes live under `root`."""

    name = "claude"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def start(self, ctx: RunContext) -> ClaudeRun:
        spec = ctx.automation.agent
        if not isinstance(spec, ClaudeAgent):
            raise BackendError("the claude backend needs `agent: {backend: claude, …}`")
        binary = find_cli("claude", spec.binary)
        bwrap = await sandbox.find()
        run = ClaudeRun(ctx, spec, binary, self.root / "runs" / str(ctx.run_id), bwrap)
        await ctx.ready()  # the CLI starts in the worktree
        await run.begin()
        return run
