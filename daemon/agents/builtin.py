"""nightshift's own agent loop over an OpenAI-compatible Chat Completions API.

The skill's SKILL.md body is the system prompt, with the catalog of the other skills (name,
description, location; their files are read on demand). The model works with tools — run a
command, read / write / search files, request approval, post an update, finish — inside the
run's workspace. Steering messages are added as user messages before the next model call, so
the conversation keeps its context. Budgets: model calls and tokens (wall time is the run's
timeout). 429 and 5xx are retried with backoff; a failing model server ends the run with a
clear error, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import signal
import ssl
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import httpx
import structlog

from ..errors import BackendError
from ..runs import (
    Command,
    FileChange,
    Finished,
    Message,
    RunEvent,
    RunStatus,
    Step,
    Usage,
)
from ..spec import BuiltinAgent
from ..workspace import WorkspaceError, sandbox
from .base import QueuedRun, RunContext, run_facts, skill_catalog
from .builtin_tools import TOOLS, WORKSPACE_TOOLS, clip
from .held_reports import HeldReports

log = structlog.get_logger(__name__)

_RETRIES = 4


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every run: loading the CA bundle takes ~25 ms of the event loop."""
    return httpx.create_ssl_context()


def system_prompt(ctx: RunContext) -> str:
    catalog = skill_catalog(ctx)
    return (
        f"You are nightshift's agent, carrying out the skill {ctx.skill.name!r} in the workspace "
        f"{ctx.workdir}. Use the tools; end with `finish`. Ask with `request_approval` before "
        f"anything elevated. People may send you steering messages while you work: follow them.\n\n"
        f"{ctx.skill.body}\n\n<available_skills>\n{catalog}\n</available_skills>"
    )


def task_prompt(ctx: RunContext) -> str:
    return f"Run {ctx.run_id} of automation {ctx.automation.name!r}.\n{run_facts(ctx)}"


class ModelError(BackendError):
    """The model server failed in a way retrying does not fix."""


class BuiltinRun(QueuedRun):
    """One run of the loop."""

    def __init__(
        self,
        ctx: RunContext,
        spec: BuiltinAgent,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self._ctx = ctx
        self._spec = spec
        self._steers: list[str] = []
        self._running = asyncio.Event()
        self._running.set()
        self._proc: asyncio.subprocess.Process | None = None
        self._tokens = 0
        self._cost = 0.0
        self._reports = HeldReports(super().emit)  # see `emit`
        self._ended = False
        headers = {"Authorization": f"Bearer {spec.api_key.resolve()}"} if spec.api_key else {}
        self._http = httpx.AsyncClient(
            base_url=spec.base_url.rstrip("/"),
            headers=headers,
            timeout=120,
            verify=_tls(),
            transport=transport,
        )
        self._task = asyncio.create_task(self._main(), name=f"builtin-{ctx.run_id}")

    # -- AgentRun -------------------------------------------------------------------------
    async def steer(self, text: str, by: str) -> None:
        self._steers.append(f"[steering from {by}] {text}")

    async def cancel(self) -> None:
        self._kill_command()
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if not self._ended:
            self.emit(Finished(status=RunStatus.FAILED, summary="stopped"))

    async def pause(self) -> None:
        self._running.clear()
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGSTOP)

    async def resume(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGCONT)
        self._running.set()

    def emit(self, event: RunEvent) -> None:
        """Report `event`, or hold it while the next model request is on its way
        (`HeldReports`)."""
        self._ended = self._ended or isinstance(event, Finished)
        self._reports.put(event)

    async def _sent(self, name: str, info: dict[str, Any]) -> None:
        # httpcore's trace hook: the request is written; the answer is awaited from here on.
        if name.endswith("receive_response_headers.started"):
            self._reports.release()

    # -- the loop -------------------------------------------------------------------------
    async def _main(self) -> None:
        try:
            status, summary = await self._loop()
        except (ModelError, WorkspaceError) as exc:
            status, summary = RunStatus.FAILED, str(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a tool must end the run, not hang it
            log.exception("builtin agent failed", run_id=self._ctx.run_id)
            status, summary = RunStatus.FAILED, f"agent error: {exc}"
        finally:
            await self._http.aclose()
        self.emit(Finished(status=status, summary=summary))

    async def _loop(self) -> tuple[RunStatus, str]:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt(self._ctx)},
            {"role": "user", "content": task_prompt(self._ctx)},
        ]
        for _ in range(self._spec.max_steps):
            if not self._running.is_set():
                self._reports.release()  # paused: what is held is reported now
                await self._running.wait()
            while self._steers:  # steering joins the conversation before the next call
                messages.append({"role": "user", "content": self._steers.pop(0)})
            reply = await self._chat(messages)
            if self._spec.max_tokens is not None and self._tokens > self._spec.max_tokens:
                return RunStatus.FAILED, f"token budget of {self._spec.max_tokens} used up"
            if self._spec.max_cost_usd is not None and self._cost > self._spec.max_cost_usd:
                return (
                    RunStatus.FAILED,
                    f"cost budget of ${self._spec.max_cost_usd:.2f} used up (${self._cost:.4f})",
                )
            message = reply["choices"][0]["message"]
            messages.append({k: v for k, v in message.items() if v is not None})
            if message.get("content"):
                self.emit(Message(text=str(message["content"])))
            calls = message.get("tool_calls") or []
            if not calls:
                return RunStatus.SUCCEEDED, str(message.get("content") or "done")
            for i, call in enumerate(calls, 1):
                name = call["function"]["name"]
                try:
                    args = json.loads(call["function"].get("arguments") or "{}")
                except json.JSONDecodeError:
                    args = {}
                if name == "finish":
                    status = (
                        RunStatus.FAILED if args.get("status") == "failed" else RunStatus.SUCCEEDED
                    )
                    return status, str(args.get("summary", ""))
                # Only the turn's last tool is followed by the next request: its report is held.
                if i == len(calls):
                    self._reports.hold()
                result = await self._tool(name, args)
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": clip(result)}
                )
        return RunStatus.FAILED, f"step budget of {self._spec.max_steps} model calls used up"

    async def _chat(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body = {
            "model": self._spec.model,
            "messages": messages,
            "tools": TOOLS,
            "tool_choice": "auto",
        }
        delay = self._spec.retry_backoff.total_seconds()
        last = ""
        for attempt in range(_RETRIES):
            try:
                resp = await self._http.post(
                    "/chat/completions", json=body, extensions={"trace": self._sent}
                )
            except httpx.TransportError as exc:
                last = (
                    f"model server unreachable at {self._spec.base_url}: {exc.__class__.__name__}"
                )
            else:
                if resp.status_code in (401, 403):
                    raise ModelError(f"model server refused the API key ({resp.status_code})")
                if resp.status_code == 429 or resp.status_code >= 500:
                    last = f"model server error {resp.status_code}: {resp.text[:200]}"
                    retry_after = resp.headers.get("retry-after", "")
                    if retry_after.isdigit():
                        delay = max(delay, float(retry_after))
                elif resp.status_code >= 400:
                    raise ModelError(
                        f"model server rejected the request ({resp.status_code}): {resp.text[:300]}"
                    )
                else:
                    data: dict[str, Any] = resp.json()
                    usage = data.get("usage") or {}
                    tokens = int(usage.get("total_tokens") or 0)
                    cost = self._spec.cost_of(
                        int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or 0),
                    )
                    self._tokens += tokens
                    self._cost += cost
                    if tokens or cost:
                        self.emit(Usage(tokens=tokens, cost_usd=cost))
                    return data
            finally:
                self._reports.release()  # not sent (refused, unreachable): reported all the same
            if attempt < _RETRIES - 1:
                await asyncio.sleep(delay)
                delay *= 2
        raise ModelError(last)

    # -- tools ----------------------------------------------------------------------------
    def _path(self, raw: str, *, write: bool) -> Path:
        root = self._ctx.workdir.resolve()
        path = (root / raw).resolve()
        if path.is_relative_to(root):
            return path
        if not write and any(
            path.is_relative_to(s.path) for s in (self._ctx.skill, *self._ctx.skills)
        ):
            return path  # skill files are readable on demand
        raise BackendError(f"{raw} is outside the workspace")

    async def _tool(self, name: str, args: dict[str, Any]) -> str:
        if name in WORKSPACE_TOOLS:
            await self._ctx.ready()  # a WorkspaceError ends the run (see _main)
        try:
            if name == "run_command":
                return await self._run_command(str(args.get("command", "")))
            if name == "read_file":
                return await asyncio.to_thread(self._path(str(args["path"]), write=False).read_text)
            if name == "write_file":
                path = self._path(str(args["path"]), write=True)
                existed = path.exists()
                path.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(path.write_text, str(args.get("content", "")))
                rel = str(path.relative_to(self._ctx.workdir.resolve()))
                self.emit(FileChange(path=rel, change="modified" if existed else "added"))
                return f"wrote {rel}"
            if name == "apply_patch":
                return await self._apply_patch(str(args.get("patch", "")))
            if name == "search_files":
                return await asyncio.to_thread(self._search, str(args.get("pattern", "")))
            if name == "request_approval":
                approved, reason = await self.approval(
                    str(args.get("action")), str(args.get("description", ""))
                )
                return "approved" if approved else f"denied: {reason or 'no reason given'}"
            if name == "post_update":
                self.emit(Step(title=str(args.get("text", ""))[:300]))
                return "posted"
            return f"unknown tool {name!r}"
        except (OSError, KeyError, UnicodeDecodeError, BackendError) as exc:
            return f"error: {exc}"

    async def _apply_patch(self, patch: str) -> str:
        """`git apply` in the worktree: atomic, and it refuses paths outside the repository."""
        if not patch.strip():
            return "error: empty patch"
        if not patch.endswith("\n"):
            patch += "\n"
        proc = await asyncio.create_subprocess_exec(
            "git", "apply", "--numstat", "--summary", "--apply", "--recount", "-",
            cwd=self._ctx.workdir,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate(patch.encode())
        text = out.decode(errors="replace").strip()
        if proc.returncode != 0:
            return f"error: the patch does not apply (nothing changed):\n{clip(text, 2000)}"
        created = set(re.findall(r"^ create mode \d+ (.+)$", text, re.M))
        deleted = set(re.findall(r"^ delete mode \d+ (.+)$", text, re.M))
        changed = [line.split("\t", 2)[2] for line in text.splitlines() if line.count("\t") >= 2]
        for path in changed:
            kind = "added" if path in created else "deleted" if path in deleted else "modified"
            self.emit(FileChange(path=path, change=kind))
        return f"applied: {len(changed)} file(s) changed ({', '.join(changed)})"

    async def _run_command(self, command: str) -> str:
        spec = self._spec
        if any(fnmatchcase(command, p) for p in spec.deny_commands):
            self.emit(Message(level="warning", text=f"refused: `{command}` is denied by policy"))
            return "refused: this command is denied by policy"
        elevated = any(fnmatchcase(command, p) for p in spec.approval_commands) or not any(
            fnmatchcase(command, p) for p in spec.allow_commands
        )
        if elevated and self._ctx.untrusted:
            # A fork's run: nothing it asks for is worth the network, whoever would approve.
            return "refused: this run works on a fork's pull request; it has no network"
        if elevated:
            approved, reason = await self.approval(
                "command", f"run `{command}` (with network access)"
            )
            if not approved:
                return f"not run: approval denied ({reason or 'no reason given'})"
        if await sandbox.find() is not None:
            # Only an approved (elevated) command gets the network; none can write outside.
            argv = sandbox.wrap(command, self._ctx.workdir, network=elevated)
        elif spec.allow_unsandboxed:
            argv = ["/bin/sh", "-c", command]
        else:
            self.emit(Message(level="warning", text="no sandbox (bubblewrap) here: refused"))
            return (
                "refused: no sandbox is available on this machine (install bubblewrap, or set "
                "allow_unsandboxed: true on the automation)"
            )
        start = time.monotonic()
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self._ctx.workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            env={
                **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
                **self._ctx.env,
                "NIGHTSHIFT_WORKDIR": str(self._ctx.workdir),
            },
        )
        try:
            out, _ = await asyncio.wait_for(
                self._proc.communicate(), spec.command_timeout.total_seconds()
            )
            code: int | None = self._proc.returncode
        except TimeoutError:
            self._kill_command()
            out, code = b"[timed out]", None
        text = out.decode(errors="replace")
        self.emit(
            Command(
                command=command,
                exit_code=code,
                output_tail=text[-4000:],
                duration_s=round(time.monotonic() - start, 3),
            )
        )
        return f"exit code {code}\n{clip(text)}"

    def _kill_command(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def _search(self, pattern: str) -> str:
        regex = re.compile(pattern)
        hits: list[str] = []
        root = self._ctx.workdir
        for path in sorted(root.rglob("*")):
            if ".git" in path.parts or not path.is_file():
                continue
            try:
                for n, line in enumerate(path.read_text().splitlines(), 1):
                    if regex.search(line):
                        hits.append(f"{path.relative_to(root)}:{n}: {line[:200]}")
                        if len(hits) >= 100:
                            return "\n".join(hits) + "\n[…more matches]"
            except (UnicodeDecodeError, OSError):
                continue
        return "\n".join(hits) or "no matches"


class BuiltinBackend:
    """Starts runs of the built-in agent loop."""

    name = "builtin"

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # A test's in-process model double (e.g. `ScriptedServer.transport()`); None: the network.
        self._transport = transport

    async def start(self, ctx: RunContext) -> BuiltinRun:
        spec = ctx.automation.agent
        if not isinstance(spec, BuiltinAgent):
            raise BackendError("the builtin backend needs `agent: {backend: builtin, …}`")
        return BuiltinRun(ctx, spec, self._transport)
