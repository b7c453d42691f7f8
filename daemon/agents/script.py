"""The script backend: runs a skill's script and speaks JSON lines with it.

Protocol (documented in docs/script-protocol.md):
- stdin, first line: the run context (`{"type": "context", ...}`); later lines: steering
  (`{"type": "steer", "text", "by"}`) and decisions (`{"type": "approval_decision", "id",
  "approved", "reason"}`) as they arrive. stdin stays open until the script exits.
- stdout: one RunEvent per line (`step`, `message`, `command`, `file_change`, `artifact`,
  `approval_request`, `finished`). Anything else is reported as a warning, never a crash.
- The exit code decides success when the script sends no `finished` event.
- `{"type": "delegate", "id", "task"}` hands a judgement call to the automation's delegate
  agent (builtin, Codex, Claude Code) in the same workspace. Its events join the run; steering
  and decisions go to it while it works; its outcome comes back on stdin as
  `{"type": "delegate_result", "id", "status", "summary"}` (`unavailable` with no delegate).
The script runs in its own process group, so a timeout or cancel kills everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import structlog

from ..errors import BackendError, NightshiftError
from ..runs import (
    ApprovalRequest,
    Finished,
    Message,
    RunEvent,
    RunStatus,
    Step,
)
from ..spec import ScriptAgent
from . import script_journal
from .base import AgentBackend, AgentRun, RunContext
from .script_lines import MAX_LINE, DelegateRequest, TooLong, parse_line, read_lines

log = structlog.get_logger(__name__)

# Once the script has exited, how long its output may take to drain: a child it left behind
# (a daemonised server) can hold the pipe open for ever, and the run must end with the script.
EXIT_GRACE = 1.0
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")


def _command_for(script: Path) -> list[str]:
    if script.suffix == ".py":
        return [sys.executable, str(script)]
    if os.access(script, os.X_OK):
        return [str(script)]
    return ["/bin/sh", str(script)]


class ScriptRun:
    """A running script."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        ctx: RunContext,
        max_line: int,
        delegates: Mapping[str, AgentBackend],
    ) -> None:
        self._proc = proc
        self._ctx = ctx
        self._max_line = max_line
        self._delegates = delegates
        self._sub: AgentRun | None = None  # the delegate agent, while it works
        self._sub_approvals: set[str] = set()
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        self._kill: asyncio.Task[None] | None = None

    async def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        async for line in read_lines(self._proc.stderr, self._max_line):
            text = "<overlong line>" if isinstance(line, TooLong) else line.decode(errors="replace")
            self._stderr_tail.append(text[:500])
            log.debug("script stderr", run_id=self._ctx.run_id, line=text[:500])

    async def _write(self, message: dict[str, Any]) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            log.warning("script stdin closed; message dropped", run_id=self._ctx.run_id)
            return
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            log.warning("script stdin closed; message dropped", run_id=self._ctx.run_id)

    async def send_context(self) -> None:
        await self._write(self._ctx.to_json())

    async def _output(self) -> AsyncIterator[bytes | TooLong]:
        """The script's output lines until EOF, or until `EXIT_GRACE` after the script exited."""
        assert self._proc.stdout is not None
        lines = read_lines(self._proc.stdout, self._max_line).__aiter__()
        exited = asyncio.ensure_future(self._exit_code())
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(lines.__anext__())
                if deadline is None:
                    await asyncio.wait({nxt, exited}, return_when=asyncio.FIRST_COMPLETED)
                    if not nxt.done():
                        deadline = loop.time() + EXIT_GRACE
                if deadline is not None and not nxt.done():
                    done, _ = await asyncio.wait({nxt}, timeout=max(deadline - loop.time(), 0))
                    if not done:
                        nxt.cancel()
                        log.warning(
                            "script exited but its output stays open (a child holds it)",
                            run_id=self._ctx.run_id,
                        )
                        return
                try:
                    yield nxt.result()
                except StopAsyncIteration:
                    return
        finally:
            exited.cancel()

    async def _exit_code(self) -> int:
        """The script's exit code as soon as it exits: on 3.11 `Process.wait` returns only
        once every pipe is closed too, which a child left behind can postpone for ever."""
        proc = self._proc
        if proc.returncode is None:
            with contextlib.suppress(OSError):  # already gone: the code is there or comes
                fd = os.pidfd_open(proc.pid)
                loop = asyncio.get_running_loop()
                gone: asyncio.Future[None] = loop.create_future()

                def readable() -> None:
                    if not gone.done():
                        gone.set_result(None)

                loop.add_reader(fd, readable)
                try:
                    await gone
                finally:
                    loop.remove_reader(fd)
                    os.close(fd)
        # The child watcher reaps it in the same moment (its own pidfd): a few ms at most.
        while proc.returncode is None:  # noqa: ASYNC110 - no event exists to wait on
            await asyncio.sleep(0.005)
        return proc.returncode

    async def events(self) -> AsyncIterator[RunEvent]:
        assert self._proc.stdout is not None
        finished: Finished | None = None
        async for line in self._output():
            event = parse_line(line, self._max_line)
            if event is None:
                continue
            if isinstance(event, DelegateRequest):
                async for sub_event in self._delegate(event):
                    yield sub_event
                continue
            if isinstance(event, Finished):
                finished = event
                continue
            yield event
        code = await self._exit_code()
        # stderr too may be held open by a child the script left behind.
        await asyncio.wait({self._stderr_task}, timeout=EXIT_GRACE)
        self._stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr_task
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        tail = "\n".join(self._stderr_tail)
        if code != 0:
            why = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            summary = f"script {why}" + (f": {tail[-1000:]}" if tail else "")
            yield Finished(status=RunStatus.FAILED, summary=summary)
        elif finished is not None:
            status = (
                finished.status
                if finished.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
                else RunStatus.FAILED
            )
            yield Finished(status=status, summary=finished.summary)
        else:
            yield Finished(status=RunStatus.SUCCEEDED, summary="script exited with code 0")

    async def _delegate(self, request: DelegateRequest) -> AsyncIterator[RunEvent]:
        """Run the delegate agent on the script's task; its events become the run's."""
        agent = self._ctx.automation.agent
        spec = agent.delegate if isinstance(agent, ScriptAgent) else None
        backend = self._delegates.get(spec.backend) if spec is not None else None
        if spec is None or backend is None:
            await self._reply(request, "unavailable", "no delegate agent is configured")
            return
        title = request.task.strip().splitlines()[0][:120]
        yield Step(title=f"{spec.backend} agent: {title}")
        # The agent sees the skill's instructions with the task appended, works in the same
        # workspace, and gets none of the run's environment: tokens stay with the script.
        ctx = dataclasses.replace(
            self._ctx,
            automation=self._ctx.automation.model_copy(update={"agent": spec}),
            skill=dataclasses.replace(
                self._ctx.skill, body=f"{self._ctx.skill.body}\n\n## Your task now\n{request.task}"
            ),
            env={},
        )
        try:
            self._sub = await backend.start(ctx)
        except NightshiftError as exc:
            yield Message(level="warning", text=f"delegate agent could not start: {exc}")
            await self._reply(request, "failed", str(exc))
            return
        outcome: Finished | None = None
        try:
            async for event in self._sub.events():
                if isinstance(event, Finished):
                    outcome = event
                    break
                if isinstance(event, ApprovalRequest):
                    self._sub_approvals.add(event.id)
                yield event
        finally:
            self._sub = None
        if outcome is None:
            await self._reply(request, "failed", "the delegate agent ended without a result")
        else:
            await self._reply(request, outcome.status.value, outcome.summary)

    async def _reply(self, request: DelegateRequest, status: str, summary: str) -> None:
        await self._write(
            {"type": "delegate_result", "id": request.id, "status": status, "summary": summary}
        )

    async def steer(self, text: str, by: str) -> None:
        if self._sub is not None:
            await self._sub.steer(text, by)
            # The script hears it too (marked as the agent's), for its own later steps.
            await self._write({"type": "steer", "text": text, "by": by, "to": "agent"})
            return
        await self._write({"type": "steer", "text": text, "by": by})

    async def decide(self, approval_id: str, approved: bool, reason: str | None) -> None:
        if approval_id in self._sub_approvals:
            if self._sub is not None:
                await self._sub.decide(approval_id, approved, reason)
            return
        await self._write(
            {"type": "approval_decision", "id": approval_id, "approved": approved, "reason": reason}
        )

    async def pause(self) -> None:
        if self._sub is not None:
            await self._sub.pause()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGSTOP)

    async def resume(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGCONT)
        if self._sub is not None:
            await self._sub.resume()

    async def cancel(self) -> None:
        if self._sub is not None:
            await self._sub.cancel()
        if self._kill is None:
            self._kill = asyncio.create_task(self._terminate())
        # Every caller waits for the same kill; shield keeps it going if one caller is cancelled.
        await asyncio.shield(self._kill)

    async def _terminate(self, grace: float = 2.0) -> None:
        """SIGTERM the whole process group, then SIGKILL it after `grace` seconds."""
        waiter = asyncio.ensure_future(self._proc.wait())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if waiter.done():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)
                # A stopped group (paused, or frozen while its replica was cut off) acts on the
                # signal pending first thing when woken: nothing more of it runs before.
                os.killpg(self._proc.pid, signal.SIGCONT)
            # asyncio.wait, not wait_for: 3.11's wait_for can swallow a cancellation.
            await asyncio.wait({waiter}, timeout=grace)
        # The leader may be gone while children it started linger in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)


class ScriptBackend:
    """Runs `scripts/...` of a skill with the JSON-lines protocol."""

    name = "script"

    def __init__(
        self, max_line: int = MAX_LINE, delegates: Mapping[str, AgentBackend] | None = None
    ) -> None:
        self._max_line = max_line
        self._delegates: Mapping[str, AgentBackend] = delegates or {}

    async def start(self, ctx: RunContext) -> ScriptRun:
        await ctx.ready()
        agent = ctx.automation.agent
        entry = (agent.entrypoint if isinstance(agent, ScriptAgent) else None) or (
            ctx.skill.manifest.entrypoint
        )
        if not entry:
            raise BackendError(f"skill {ctx.skill.name!r} has no script entrypoint")
        script = ctx.skill.path / entry
        if not script.is_file():
            raise BackendError(f"script {script} does not exist")
        # Scripts get a minimal environment: the daemon's own secrets stay out of reach.
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(ctx.env)
        env.update(
            NIGHTSHIFT_RUN_ID=str(ctx.run_id),
            NIGHTSHIFT_SKILL_DIR=str(ctx.skill.path),
            NIGHTSHIFT_WORKDIR=str(ctx.workdir),
            PYTHONUNBUFFERED="1",
        )
        command = _command_for(script)
        if ctx.journal is not None:
            await asyncio.to_thread(ctx.journal.mkdir, parents=True, exist_ok=True)
            command = script_journal.wrap(command, ctx.journal)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=ctx.workdir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendError(f"cannot start {script}: {exc.strerror}") from exc
        run = ScriptRun(proc, ctx, self._max_line, self._delegates)
        await run.send_context()
        return run
