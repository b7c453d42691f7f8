"""The Codex CLI backend: `codex exec --json` in the run's worktree.

Each run gets a generated model provider (Responses API at the automation's base URL; the key
reaches the CLI through an environment variable, never a file), Codex's own sandbox
(workspace-write: no network, writes in the worktree and the run's private TMPDIR), the
automation's `deny_commands` as Codex execpolicy rules, and nightshift's MCP server for
approvals. Codex's JSONL items become RunEvents.

CODEX_HOME is the daemon's, one folder per automation (`<state>/agents/codex/home/<name>`):
Codex reads its rules from there, so each automation's rules apply to its runs only, and a
run's thread stays where `codex exec resume` finds it.

Steering: `codex exec` runs one turn to the end, so a steering message interrupts the turn at
the next item boundary (never in the middle of a command) and continues the same thread with
`codex exec resume <thread_id> <message>`; Codex keeps the whole conversation, so the model
sees the earlier context, a note that the turn was interrupted, and the message.

Codex waits forever when its model server is unreachable; the run ends once it has been
reconnecting for `unreachable_after`.

A command Codex refuses by rule (the automation's `deny_commands`) leaves no item in `--json`
output: the model only reads the refusal as the call's output. The thread's session log
(`CODEX_HOME/sessions/…/rollout-…-<thread id>.jsonl`) holds that output, so it is read as the
turn goes, and each refusal is reported where it happened, before the next item.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import BackendError
from ..runs import Command, FileChange, Message, RunStatus, Step, Usage
from ..spec import CodexAgent
from .base import RunContext
from .cli import CliRun, base_env, find_cli, prompt

_KEY_VAR = "NIGHTSHIFT_CODEX_API_KEY"
_FILE_KINDS = {"add": "added", "delete": "deleted", "update": "modified"}
# Features that reach for the internet or the user's shell profile at start-up.
_DISABLED = ("plugins", "remote_plugin", "apps", "shell_snapshot")
# How Codex words a command its rules refused, in the call's output (Rust's Debug form).
_REJECTED = re.compile(r'Rejected\(\\"(?P<why>.*)\\"\)')


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _write_rules(home: Path, deny: list[str]) -> None:
    """The automation's `deny_commands` as `forbidden` prefix rules in `home/rules`, replaced
    whole (a run of the same automation may be reading them)."""
    folder = home / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(
        'prefix_rule(pattern=[{}], decision="forbidden", justification={})\n'.format(
            ", ".join(json.dumps(token, ensure_ascii=False) for token in shlex.split(prefix)),
            json.dumps(f"the automation denies `{prefix}`", ensure_ascii=False),
        )
        for prefix in deny
    )
    fd, staged = tempfile.mkstemp(dir=folder, prefix=".nightshift-")  # not *.rules: not read
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(staged, folder / "nightshift.rules")


def _unwrap(command: str) -> str:
    """`/bin/bash -lc 'make test'` → `make test` (what the model asked for)."""
    try:
        parts = shlex.split(command)
    except ValueError:
        return command
    if len(parts) == 3 and parts[0].endswith("sh") and parts[1] in ("-lc", "-c"):
        return parts[2]
    return command


class CodexRun(CliRun):
    """One run: one Codex thread, one `codex exec` process per turn."""

    def __init__(
        self, ctx: RunContext, spec: CodexAgent, binary: str, home: Path, private: Path
    ) -> None:
        super().__init__(ctx)
        self._spec = spec
        self._binary = binary
        self._home = home
        self._private = private  # the run's HOME and TMPDIR, removed at its end
        self._steers: list[str] = []
        self._in_flight: set[str] = set()
        self._interrupting = False
        self._turn_running = False
        self._tokens = 0
        # Only the automation's own rules refuse (Codex's sandbox reports a failed command
        # as an item): without any, there is no refusal to look for.
        self._session = _SessionLog(home / "sessions") if spec.deny_commands else None

    async def steer(self, text: str, by: str) -> None:
        self._steers.append(f"[steering from {by}] {text}")
        if not self._turn_running:
            return  # the next turn starts with it
        self._interrupting = True
        if not self._in_flight:
            self.signal(signal.SIGINT)  # waiting on the model: nothing is lost by stopping now

    def _argv(self, thread_id: str | None, text: str) -> list[str]:
        provider = (
            f"{{name={_toml('nightshift')}, base_url={_toml(self._spec.base_url)}, "
            f'wire_api="responses", request_max_retries={self._spec.max_retries}, '
            f"stream_max_retries={self._spec.max_retries}"
            + (f", env_key={_toml(_KEY_VAR)}" if self._spec.api_key else "")
            + "}"
        )
        mcp = self.mcp_command()
        server = f"{{command={_toml(mcp[0])}, args=[{', '.join(_toml(a) for a in mcp[1:])}]}}"
        config = {
            "model": _toml(self._spec.model),
            "model_provider": _toml("nightshift"),
            "model_providers.nightshift": provider,
            "approval_policy": _toml("never"),
            "sandbox_mode": _toml(self._spec.sandbox),
            # workspace-write also opens /tmp to writes by default; the run's own TMPDIR is
            # the private temp folder the policy allows, so the shared /tmp stays read-only.
            "sandbox_workspace_write.exclude_slash_tmp": "true",
            "mcp_servers.nightshift": server,
        }
        argv = [self._binary, "exec"]
        if thread_id is not None:
            argv += ["resume"]
        argv += ["--json", "--skip-git-repo-check"]
        for feature in _DISABLED:
            argv += ["--disable", feature]
        for key, value in config.items():
            argv += ["-c", f"{key}={value}"]
        if thread_id is not None:
            argv.append(thread_id)
        argv.append(text)
        return argv

    async def _drive(self) -> tuple[RunStatus, str]:
        home, tmp = self._private / "home", self._private / "tmp"
        await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
        env = base_env(self._ctx, home, tmp)
        env["CODEX_HOME"] = str(self._home)
        if self._spec.api_key is not None:
            env[_KEY_VAR] = self._spec.api_key.resolve()
        try:
            thread_id: str | None = None
            text = prompt(self._ctx)
            summary = ""
            while True:
                outcome = await self._turn(self._argv(thread_id, text), env)
                thread_id = outcome.get("thread_id", thread_id)
                summary = outcome.get("summary") or summary
                if outcome.get("failed"):
                    return RunStatus.FAILED, str(outcome["failed"])
                if self._steers:
                    if thread_id is None:
                        raise BackendError("codex ended before it started a thread")
                    text = "\n\n".join(self._steers)
                    self._steers.clear()
                    continue
                return RunStatus.SUCCEEDED, summary or "done"
        finally:
            await asyncio.to_thread(shutil.rmtree, self._private, True)

    async def _turn(self, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
        """One `codex exec` process; what it said, and whether it failed."""
        self._interrupting = False
        self._in_flight.clear()
        proc = await self.spawn(argv, env, stdin=asyncio.subprocess.DEVNULL)
        self._turn_running = True
        outcome: dict[str, Any] = {}
        reconnecting_since: float | None = None
        stderr = asyncio.create_task(proc.stderr.read() if proc.stderr else asyncio.sleep(0))
        try:
            async for line in self.json_lines(proc):
                kind = line.get("type")
                if kind == "thread.started":
                    outcome["thread_id"] = str(line.get("thread_id"))
                elif kind in ("item.started", "item.completed"):
                    item = line.get("item") or {}
                    # A refusal shows before the item that follows it; the end of an item whose
                    # start was looked at needs no look of its own (one read a command).
                    if kind == "item.started" or str(item.get("id")) not in self._in_flight:
                        await self._refusals(outcome.get("thread_id"))
                    self._item(kind, item, outcome)
                elif kind == "turn.completed":
                    usage = line.get("usage") or {}
                    tokens = int(usage.get("input_tokens") or 0) + int(
                        usage.get("output_tokens") or 0
                    )
                    self._tokens += tokens
                    if tokens:
                        self.emit(Usage(tokens=tokens))  # Codex reports no price
                    budget = self._spec.max_tokens
                    if budget is not None and self._tokens > budget:
                        outcome["failed"] = f"token budget of {budget} used up"
                elif kind == "turn.failed":
                    error = (line.get("error") or {}).get("message", "the turn failed")
                    outcome["failed"] = f"codex: {error}"
                elif kind == "error":
                    text = str(line.get("message", ""))
                    if text.startswith("Reconnecting"):
                        now = time.monotonic()
                        reconnecting_since = reconnecting_since or now
                        if now - reconnecting_since > self._spec.unreachable_after.total_seconds():
                            self.kill()
                            outcome["failed"] = (
                                f"model server unreachable at {self._spec.base_url} "
                                f"(codex kept reconnecting: {text[:200]})"
                            )
                            break
                    elif not self._interrupting:
                        self.emit(Message(level="warning", text=f"codex: {text[:500]}"))
                if self._interrupting and not self._in_flight:
                    self.signal(signal.SIGINT)
            code = await proc.wait()
            await self._refusals(outcome.get("thread_id"))
        finally:
            self._turn_running = False
        err = (await stderr or b"").decode(errors="replace").strip()
        if self._interrupting and self._steers:
            outcome.pop("failed", None)  # we stopped it to steer; the thread goes on
        elif code != 0 and "failed" not in outcome:
            outcome["failed"] = f"codex exited with code {code}: {err[-500:] or 'no output'}"
        return outcome

    async def _refusals(self, thread_id: str | None) -> None:
        """Report the commands Codex refused since the last look (see the module's doc)."""
        if thread_id is None or self._session is None:
            return
        for command, why in await asyncio.to_thread(self._session.refusals, thread_id):
            self.emit(Message(level="warning", text=f"refused by policy: `{command}` ({why})"))

    def _item(self, kind: str, item: dict[str, Any], outcome: dict[str, Any]) -> None:
        item_id, item_type = str(item.get("id")), item.get("type")
        if kind == "item.started":
            if item_type in ("command_execution", "mcp_tool_call", "file_change"):
                self._in_flight.add(item_id)
            return
        self._in_flight.discard(item_id)
        if item_type == "command_execution":
            self.emit(
                Command(
                    command=_unwrap(str(item.get("command", ""))),
                    exit_code=item.get("exit_code"),
                    output_tail=str(item.get("aggregated_output") or "")[-4000:],
                )
            )
        elif item_type == "file_change":
            root = self._ctx.workdir.resolve()
            for change in item.get("changes") or []:
                path = Path(str(change.get("path", "")))
                rel = path.relative_to(root) if path.is_relative_to(root) else path
                kind_ = _FILE_KINDS.get(str(change.get("kind")), "modified")
                self.emit(FileChange(path=str(rel), change=kind_))
        elif item_type == "agent_message":
            text = str(item.get("text", ""))
            outcome["summary"] = text
            self.emit(Message(text=text))
        elif item_type == "reasoning":
            # A reasoning summary: its bold first line is a heading, the rest the detail.
            head, _, rest = str(item.get("text", "")).strip().partition("\n")
            if head:
                self.emit(Step(title=head.strip("* ")[:200], detail=rest.strip()[:2000] or None))
        elif item_type == "todo_list":
            todo = item.get("items") or []
            lines = [f"{'☑' if t.get('completed') else '☐'} {t.get('text', '')}" for t in todo]
            self.emit(Step(title="plan", detail="\n".join(lines)))
        elif item_type == "error":
            self.emit(Message(level="warning", text=f"codex: {item.get('message', '')}"[:500]))


class _SessionLog:
    """The new part of a Codex thread's session log, read as it grows."""

    def __init__(self, sessions: Path) -> None:
        self._sessions = sessions
        self._path: Path | None = None
        self._offset = 0
        self._commands: dict[str, str] = {}  # call id -> the command the model asked for

    def refusals(self, thread_id: str) -> list[tuple[str, str]]:
        """(command, why) of each refusal written since the last call."""
        if self._path is None:
            found = sorted(self._sessions.glob(f"*/*/*/rollout-*-{thread_id}.jsonl"))
            if not found:
                return []
            self._path = found[-1]
        with self._path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for next time
        self._offset += len(complete)
        out = []
        for raw in complete.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            payload = entry.get("payload") if isinstance(entry, dict) else None
            if not isinstance(payload, dict) or entry.get("type") != "response_item":
                continue
            call_id = str(payload.get("call_id"))
            if payload.get("type") == "function_call":
                self._commands[call_id] = _asked(payload.get("arguments"))
            elif payload.get("type") == "function_call_output":
                found_why = _REJECTED.search(str(payload.get("output", "")))
                if found_why is not None:
                    why = found_why["why"].replace('\\"', '"').replace("\\\\", "\\")
                    command = self._commands.pop(call_id, "") or why.partition("` ")[0][1:]
                    out.append((command, why.rpartition(" rejected: ")[2] or why))
        return out


def _asked(arguments: Any) -> str:
    """The command in a shell call's arguments (`{"cmd": …}`, or an argv `command`)."""
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else {}
    except ValueError:
        return ""
    command = args.get("cmd", args.get("command", "")) if isinstance(args, dict) else ""
    return _unwrap(shlex.join(command)) if isinstance(command, list) else str(command)


class CodexBackend:
    """Starts runs of the Codex CLI. `home` holds the daemon's CODEX_HOME folders, one per
    automation; each run's private folder is `home.parent/runs/<run id>`."""

    name = "codex"

    def __init__(self, home: Path) -> None:
        self.home = home

    async def start(self, ctx: RunContext) -> CodexRun:
        spec = ctx.automation.agent
        if not isinstance(spec, CodexAgent):
            raise BackendError("the codex backend needs `agent: {backend: codex, …}`")
        binary = find_cli("codex", spec.binary)
        home = self.home / ctx.automation.name
        await asyncio.to_thread(_write_rules, home, spec.deny_commands)
        private = self.home.parent / "runs" / str(ctx.run_id)
        run = CodexRun(ctx, spec, binary, home, private)
        await ctx.ready()  # the CLI starts in the worktree
        await run.begin()
        return run
