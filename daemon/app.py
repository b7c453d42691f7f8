"""The daemon: wires sources → dispatcher → executor → agent backends → reporters."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import signal
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

from .agents import AgentBackend, default_backends, watch_children_with_pidfd
from .bus import EventBus
from .config import DaemonConfig, StateLayout
from .conversations import Conversations, StatusComments
from .dispatch import Dispatcher
from .errors import DaemonAlreadyRunning, SecretError, StoreError
from .executor import Executor
from .github import GitHubClient
from .http import build_web_app, serve_control
from .http import serve as serve_asgi
from .loader import Catalog, Loader
from .membership import Membership
from .metrics import Metrics
from .reload import watch
from .reporters import ConsoleReporter
from .sources import FileSource, Scheduler
from .spec import Automation, Skill, describe_trigger
from .store import Store, utcnow

log = structlog.get_logger(__name__)


class Daemon:
    """One nightshift process. `await Daemon(config).run()` until SIGTERM or `stop()`."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        backends: dict[str, AgentBackend] | None = None,
        console: TextIO | None = None,
    ) -> None:
        self.config = config
        self.loader = Loader(config.automations_dir, config.skills_dir)
        self.store = Store(config.resolved_database_url())
        self.metrics = Metrics()
        self.membership = Membership(
            self.store, config.replicas, refused=self.metrics.effects_refused.inc
        )
        self.replica_id = self.membership.id
        self.bus = EventBus(self.store)
        executing: dict[str, Any] = {
            "store": self.store,
            "bus": self.bus,
            "catalog": self.catalog,
            "backends": backends or default_backends(config.state_dir),
            "max_runs": config.concurrency.max_runs,
            "state": StateLayout(config.state_dir),
            "base_dir": config.base_dir,
            "skill_env": self._skill_env,
            "owner": self.replica_id,
            "live": self.membership.live,
            "beating": self.membership.beating,
        }
        if config.engine.type == "temporal":
            # Imported only here: the Temporal client is for the installs that use it.
            from .engines import TemporalEngine

            self.executor: Executor = TemporalEngine(
                engine=config.engine, replica=self.replica_id, **executing
            )
        else:
            self.executor = Executor(**executing)
        self.conversations = Conversations(
            self.store, self.executor, self._github_client, self.catalog
        )
        self.dispatcher = Dispatcher(
            self.store,
            self.executor,
            self.catalog,
            bus=self.bus,
            sources=config.sources,
            unready=self._unready,
            mentions=self.conversations.submit,
        )
        self.scheduler = Scheduler(self.store, self.dispatcher)
        self.files = FileSource(
            config.base_dir,
            self.dispatcher.route,
            ignore=[config.state_dir],
            force_polling=config.reload.force_polling,
        )
        self.metrics.track_executor(
            lambda: len(self.executor.active_ids),
            lambda: len(self.executor.queued_ids),
            lambda: len(self.executor.waiting_ids),
            lambda: len(self.executor.paused_ids),
        )
        self.metrics.track_problems(lambda: len(self.loader.catalog.problems))
        self.metrics.track_replica(
            self.replica_id,
            config.engine.type,
            lambda: self.executor.taken_over,
            lambda: self.executor.lost_here,
        )
        self.executor.on_started(self._count_started)
        self.executor.on_finished(self._count_finished)
        self.http_port: int | None = None
        self.stopping = False
        self._console_out = console
        self._stop = asyncio.Event()
        self._watch_stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.started_at: datetime | None = None
        self._lock_fd: int | None = None
        self._slack_reporter: Any = None
        self._slack_http: Any = None  # one aiohttp session for every Slack Web API call
        self.slack_source: Any = None

    def _count_started(self, run_id: int) -> None:
        self.metrics.runs_started.labels("*").inc()

    def _count_finished(self, automation: str, status: Any, seconds: float | None) -> None:
        self.metrics.runs_finished.labels(automation, status.value).inc()
        if seconds is not None:
            self.metrics.run_seconds.labels(automation).observe(seconds)

    def _skill_env(self, skill: Skill) -> dict[str, str]:
        """What this daemon grants a skill's runs: GitHub access if the skill asks for it."""
        if skill.manifest.permissions.github:
            return self.config.github.run_env()
        return {}

    def _unready(self, automation: Automation, skill: Skill) -> str | None:
        """Why a run of `automation` could not start now (a token it needs is missing), or
        None: asked before a person's trigger is taken, so it fails at once, not in the run."""
        if skill.manifest.permissions.github and self.config.github.token is None:
            return (
                f"skill {skill.name!r} uses GitHub (permissions.github) and the config sets "
                "no github.token"
            )
        try:
            self._skill_env(skill)
            for ref in automation.env.values():
                ref.resolve()
        except SecretError as exc:
            return str(exc)
        return None

    @functools.cache  # noqa: B019 - one client for the daemon's life, made on first use
    def _github_client(self) -> GitHubClient | None:
        """nightshift's own GitHub client (conversations); None without `github.token`."""
        cfg = self.config.github
        if cfg.token is None:
            return None
        try:
            token = cfg.token.resolve(base_dir=self.config.base_dir)
        except SecretError as exc:
            log.error("github.token cannot be resolved", why=str(exc))
            return None
        return GitHubClient(token, cfg.api_url, write_interval=cfg.write_interval)

    def _status_comments(self) -> StatusComments:
        public = self.config.center.public_url

        def page(run_id: int) -> str | None:
            return f"{public.rstrip('/')}/runs/{run_id}" if public else None

        every = 2.0 if self.config.github.write_interval else 0.0
        return StatusComments(
            self.store,
            self.bus,
            self._github_client,
            page_url=page,
            every=every,
            wrote=self.conversations.wrote,
            holds=self.membership.holds,
        )

    async def _heartbeat(self) -> None:
        """Beat while alive, so replicas sharing the database leave this daemon's runs alone;
        recover the runs of replicas that stopped beating; and while no beat can be stored,
        freeze this replica's agents before another may take their runs."""
        while True:
            await asyncio.sleep(self.membership.every)
            try:
                await self.membership.beat()
                await self.executor.drop_lost()
                if thawed := await self.executor.unfence():
                    log.warning("database reachable again: agents thawed", runs=thawed)
                if not self.stopping:
                    await self.executor.recover_gone()
            except (StoreError, TimeoutError) as exc:  # the database is away: beat again
                log.warning("heartbeat not stored", error=str(exc) or "timed out")
                silent = self.membership.silent_for()
                if silent is not None and (frozen := await self.executor.fence()):
                    log.warning(
                        "database unreachable: agents frozen until this replica knows its "
                        "runs are still its own",
                        runs=frozen,
                        silent_s=round(silent, 1),
                    )

    def catalog(self) -> Catalog:
        """The active automations and skills."""
        return self.loader.catalog

    def stop(self) -> None:
        """Ask the daemon to stop gracefully (what SIGTERM does)."""
        self._stop.set()

    def status(self) -> dict[str, Any]:
        """What `GET /v1/status` answers."""
        catalog = self.catalog()
        nexts = self.scheduler.next_fires()
        return {
            "replica": self.replica_id,
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "automations": {
                name: {
                    "enabled": a.enabled,
                    "skill": a.skill,
                    "triggers": [describe_trigger(t) for t in a.triggers],
                    "source": str(catalog.sources.get(name)),
                    "next_fire": (nxt := nexts.get(name)) and nxt.isoformat(),
                }
                for name, a in sorted(catalog.automations.items())
            },
            "problems": [str(p) for p in catalog.problems],
            "active_runs": self.executor.active_ids,
            "queued_runs": self.executor.queued_ids,
            "queue_reasons": {str(k): v for k, v in self.executor.queue_reasons().items()},
        }

    def _take_lock(self) -> None:
        state = self.config.state_dir
        state.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(state, 0o700)
        fd = os.open(state / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonAlreadyRunning(f"another nightshift daemon is using {state}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _report_problems(self, catalog: Catalog, paths: set[Path] | None = None) -> None:
        for problem in catalog.problems:
            if paths is None or problem.path in paths or problem.path.parent in paths:
                log.error("invalid automation or skill", problem=str(problem))

    async def _on_reload(self, catalog: Catalog, paths: set[Path]) -> None:
        resolved = {p.resolve() for p in paths}
        self._report_problems(catalog, resolved)
        bad = {p.path for p in catalog.problems}
        kept = [n for n, src in catalog.sources.items() if src in bad]
        if kept:
            log.warning("keeping the last good version", automations=sorted(kept))
        await self.scheduler.sync(catalog)
        await self.files.sync(catalog)
        log.info(
            "reloaded",
            changed=sorted(str(p) for p in paths),
            automations=len(catalog.automations),
            problems=len(catalog.problems),
        )

    async def run(self) -> None:
        """Run until stopped; returns after a graceful shutdown."""
        with watch_children_with_pidfd():
            await self._serve()

    async def _serve(self) -> None:
        self._take_lock()
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        try:
            await asyncio.to_thread(
                self.store.open_schema, upgrade_behind=self.config.upgrade_database
            )
            catalog = await asyncio.to_thread(self.loader.load)
            self._report_problems(catalog)
            self.started_at = utcnow()
            await self.membership.register()
            await self.dispatcher.load_paused()
            await self.executor.start()
            await self.scheduler.sync(catalog, catch_up=True)

            def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
                task = asyncio.create_task(coro, name=name)
                task.add_done_callback(self._on_task_done)
                tasks.append(task)

            spawn(self._heartbeat(), "heartbeat")
            control_ready = asyncio.Event()
            spawn(serve_control(self, control_ready), "control")
            http_ready = asyncio.Event()
            if self.config.http.enabled:
                bound: list[int] = []
                spawn(
                    serve_asgi(
                        build_web_app(self),
                        http_ready,
                        host=self.config.http.host,
                        port=self.config.http.port,
                        bound=bound,
                        header_timeout=self.config.http.header_timeout.total_seconds(),
                        body_timeout=self.config.http.body_timeout.total_seconds(),
                        max_connections=self.config.http.max_connections,
                    ),
                    "http",
                )
                sources = self.config.sources
                if self.config.event_writer == "process" and (
                    sources.github or sources.alertmanager or sources.webhooks
                ):
                    # Webhooks come in bursts; a daemon that takes none keeps one process.
                    self.store.start_writer_process()
            else:
                http_ready.set()
            await self.files.sync(catalog)
            spawn(self.scheduler.run(), "scheduler")
            if self.config.console:
                spawn(ConsoleReporter(self.bus, self.catalog, self._console_out).run(), "console")
            if self.config.github.token is not None:
                spawn(self._status_comments().run(), "github status comments")
            if self.config.slack is not None:
                import aiohttp

                from .slack import SlackDelivery, SlackReporter, make_client

                self._slack_http = aiohttp.ClientSession()
                delivery = SlackDelivery(
                    self.store,
                    make_client(self.config.slack, self._slack_http),
                    self.config.slack.min_interval.total_seconds(),
                    others=self.membership.others,
                    holds=self.membership.holds,
                )
                reporter = SlackReporter(
                    self.store, self.bus, self.catalog, delivery.enqueue, delivery.enqueue_written
                )
                self._slack_reporter = reporter
                spawn(reporter.run(), "slack-reporter")
                spawn(reporter.refresh(self.config.slack.refresh.total_seconds()), "slack-refresh")
                spawn(delivery.run(), "slack-delivery")
                slack = self.config.slack
                if slack.app_token is not None or slack.signing_secret is not None:
                    from .slack import SlackSource

                    self.slack_source = SlackSource(
                        app_token=slack.app_token.resolve() if slack.app_token else None,
                        client=make_client(slack, self._slack_http),
                        store=self.store,
                        executor=self.executor,
                        dispatcher=self.dispatcher,
                        catalog=self.catalog,
                    )
                    if slack.app_token is not None:
                        spawn(self.slack_source.run(), "slack-source")
            if self.config.reload.enabled:
                spawn(
                    watch(
                        self.loader,
                        self._on_reload,
                        debounce_ms=self.config.reload.debounce_ms,
                        force_polling=self.config.reload.force_polling,
                        stop=self._watch_stop,
                    ),
                    "reload",
                )
            await control_ready.wait()
            await http_ready.wait()
            if self.config.http.enabled:
                self.http_port = bound[0]
            log.info(
                "nightshift running",
                http=f"http://{self.config.http.host}:{self.http_port}" if self.http_port else None,
                automations=len(catalog.automations),
                problems=len(catalog.problems),
                socket=str(self.config.socket_path),
                database=self.store.engine.url.render_as_string(hide_password=True),
            )
            self.ready.set()
            await self._stop.wait()
            log.info("stopping: no new runs", grace_s=self.config.shutdown_grace.total_seconds())
        finally:
            self.stopping = True
            self._watch_stop.set()
            await self.files.stop()
            for task in tasks:
                # The heartbeat goes on while the runs end: until then they are this daemon's.
                if task.get_name() not in ("console", "slack-reporter", "heartbeat"):
                    task.cancel()
            await self.executor.shutdown(self.config.shutdown_grace.total_seconds())
            with contextlib.suppress(Exception):  # a database gone now: the beat stops anyway
                await self.membership.forget()
            if self._slack_reporter is not None:
                await self._slack_reporter.flush(5)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._slack_http is not None:
                await self._slack_http.close()
            await self.store.stop_writer_process()
            await asyncio.to_thread(self.store.close)
            with contextlib.suppress(OSError):
                self.config.socket_path.unlink()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            log.info("nightshift stopped")

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "daemon component failed; stopping", component=task.get_name(), error=repr(exc)
            )
            self.stop()
