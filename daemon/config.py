"""The daemon's own settings (`config.yaml`), modelled in pydantic.

Lookup order: `--config PATH`, `$NIGHTSHIFT_CONFIG`, `./config.yaml`; with none of them the
defaults apply, so `nightshift run` works from a checkout's own `automations/` and `skills/`.
Relative paths in a config file are relative to that file's folder.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .durations import Duration
from .errors import ConfigError
from .secrets import SecretRef


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConcurrencyConfig(_Strict):
    """Global limits of the in-process executor."""

    max_runs: int = Field(4, ge=1, description="runs executing at once across all automations")


class LoggingConfig(_Strict):
    """How the daemon logs (to stderr)."""

    format: Literal["human", "json"] = "human"
    level: Literal["debug", "info", "warning", "error"] = "info"


class ReloadConfig(_Strict):
    """Hot reload of automations and skills."""

    enabled: bool = True
    debounce_ms: int = Field(50, ge=0, le=10_000)
    force_polling: bool = Field(False, description="poll instead of inotify (containers, NFS)")


class HttpConfig(_Strict):
    """The daemon's HTTP server: webhooks, health and metrics."""

    enabled: bool = True
    host: str = Field(
        "127.0.0.1", description="listen address; 0.0.0.0 to take webhooks from outside"
    )
    port: int = Field(8480, ge=0, le=65535, description="0 picks a free port")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    header_timeout: Duration = Field(
        timedelta(seconds=10),
        description="a connection whose request headers are not complete by then is closed",
    )
    body_timeout: Duration = Field(
        timedelta(seconds=30), description="a request body not complete by then gets 408"
    )
    max_connections: int = Field(
        1000, ge=1, description="open connections at once; beyond it requests get 503"
    )


class GitHubSource(_Strict):
    """`/hooks/github`."""

    secret: SecretRef = Field(description="the webhook secret, e.g. ${GITHUB_WEBHOOK_SECRET}")
    bot_login: str | None = Field(None, description="nightshift's GitHub user (loop guard)")
    branch_prefix: str = Field("nightshift/", description="nightshift's own branches (loop guard)")


class AlertmanagerSource(_Strict):
    """`/hooks/alertmanager`, with `http_config.authorization` credentials in Alertmanager."""

    token: SecretRef = Field(description="bearer token Alertmanager sends")


class WebhookSource(_Strict):
    """A generic JSON webhook at `/hooks/<name>`."""

    auth: Literal["hmac", "bearer", "standard"] = Field(
        description="hmac: a signature of the body; bearer: a token; standard: Standard "
        "Webhooks (webhook-id, webhook-timestamp, webhook-signature), which also refuses a "
        "replay outside `tolerance` and keys each delivery by its webhook-id"
    )
    secret: SecretRef
    tolerance: Duration = Field(
        timedelta(minutes=5), description="standard: how far webhook-timestamp may be from now"
    )
    signature_header: str = Field("X-Signature-256", description="hmac: sha256=<hex> or <hex>")
    id_header: str | None = Field(None, description="header with a delivery id (idempotency)")
    type_field: str | None = Field(None, description="dotted JSON field naming the event type")


class SourcesConfig(_Strict):
    """Where events come from (schedules and manual triggers need no set-up)."""

    github: GitHubSource | None = None
    alertmanager: AlertmanagerSource | None = None
    webhooks: dict[str, WebhookSource] = Field(default_factory=dict)


class GitHubApiConfig(_Strict):
    """GitHub's REST API, handed to runs of skills that declare `permissions.github`."""

    api_url: str = Field(
        "https://api.github.com",
        description="REST base; GitHub Enterprise Server: https://HOST/api/v3",
    )
    token: SecretRef | None = Field(None, description="e.g. ${GITHUB_TOKEN}")
    write_interval: float = Field(
        1.0, ge=0, description="seconds between two writes (GitHub asks for at least 1)"
    )

    def run_env(self) -> dict[str, str]:
        """The environment a run gets: the API URL, the token (resolved now), the pacing."""
        env = {
            "GITHUB_API_URL": self.api_url,
            "NIGHTSHIFT_GITHUB_WRITE_INTERVAL": str(self.write_interval),
        }
        if self.token is not None:
            env["GITHUB_TOKEN"] = self.token.resolve()
        return env


class StateLayout:
    """Where each kind of thing lives in the state folder: named once, here.

    `runs/<id>` a run's plain folder; `worktrees/<id>` a run's git worktree; `spares/` the
    next run's worktree, made ahead; `mirrors/` bare clones of repositories given by URL;
    `journals/<id>` a script's output and exit code until its run is recorded; `agents/`
    the CLI agents' homes.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = root / "runs"
        self.worktrees = root / "worktrees"
        self.spares = root / "spares"
        self.mirrors = root / "mirrors"
        self.journals = root / "journals"
        self.agents = root / "agents"

    def run_dirs(self, run_id: int) -> tuple[Path, Path]:
        """The folders a run's processes may work in: its plain folder, its worktree."""
        return self.runs / str(run_id), self.worktrees / str(run_id)

    def journal(self, run_id: int) -> Path:
        """Where a script run's journal is kept until the run is recorded finished."""
        return self.journals / str(run_id)


class SlackConfig(_Strict):
    """Slack: where runs report (each automation names its channel in `report.channel`)."""

    bot_token: SecretRef = Field(description="xoxb-… bot token, e.g. ${SLACK_BOT_TOKEN}")
    app_token: SecretRef | None = Field(None, description="xapp-… token for Socket Mode replies")
    signing_secret: SecretRef | None = Field(
        None, description="for the Events API over HTTP (POST /slack/events) instead of Socket Mode"
    )
    base_url: str = Field("https://slack.com/api/", description="Web API base (ends in /api/)")
    min_interval: Duration = Field(
        timedelta(seconds=1), description="least time between two posts to one channel"
    )
    refresh: Duration = Field(
        timedelta(seconds=60), description="how often a working run's parent message is refreshed"
    )


class EngineConfig(_Strict):
    """What executes runs: `local` (this process; SQLite or PostgreSQL), or `temporal` (runs
    as Temporal workflows shared by every replica on the same task queue)."""

    type: Literal["local", "temporal"] = "local"
    address: str = Field("127.0.0.1:7233", description="the Temporal frontend, host:port")
    namespace: str = "default"
    task_queue: str = Field("nightshift", description="shared by the replicas of one install")
    heartbeat_timeout: Duration = Field(
        timedelta(seconds=30),
        description="a replica executing a run silent this long has lost it: another takes over",
    )
    history_events: int = Field(
        1000,
        ge=20,
        description="a run's workflow continues as new once its history holds this many "
        "events (each message for the run adds about eight; its steps add none)",
    )


class ReplicaConfig(_Strict):
    """Daemons sharing one database (PostgreSQL): each beats; a run whose daemon's heartbeat
    stopped is recovered by another, and a live daemon's runs are left alone."""

    heartbeat: Duration = Field(timedelta(seconds=5), description="how often a daemon beats")
    gone_after: Duration = Field(
        timedelta(seconds=30), description="a daemon silent this long is gone; its runs recovered"
    )


class CenterToken(_Strict):
    """A token that opens the command center when it is served beyond loopback."""

    name: str = Field(min_length=1, max_length=64, description="who acts with it, e.g. ops")
    token: SecretRef = Field(description="e.g. ${NIGHTSHIFT_WEB_TOKEN}")
    read_only: bool = Field(False, description="sees everything and can change nothing")


class CenterConfig(_Strict):
    """The command center: the web page and its JSON API under /api/, on the HTTP server."""

    enabled: bool = True
    tokens: list[CenterToken] = Field(
        default_factory=list,
        description="required when `http.host` is not a loopback address (no login on loopback)",
    )
    trusted_header: str | None = Field(
        None,
        description="a header a reverse proxy you trust sets to the signed-in user (e.g. "
        "X-Forwarded-User); the proxy must drop it from what clients send",
    )
    public_url: str | None = Field(
        None,
        description="where people reach the center (e.g. https://nightshift.example.com); "
        "GitHub status comments link a run's page there",
    )


class DaemonConfig(_Strict):
    """Everything `config.yaml` may set; every field has a working default."""

    state_dir: Path = Field(Path(".nightshift"), description="database, sockets, run folders")
    database_url: SecretRef | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<state_dir>/nightshift.db. "
        "postgresql+psycopg://... works too; may reference ${ENV} for the password",
    )
    upgrade_database: bool = Field(
        False,
        description="upgrade a database made by an older build when the daemon starts; "
        "otherwise it refuses to start and names the command (`nightshift db upgrade`)",
    )
    event_writer: Literal["process", "thread"] = Field(
        "process",
        description="where events are stored when webhook sources are configured: a writer "
        "process of the daemon's own, so the HTTP path keeps its core (an in-memory SQLite "
        "database always uses the thread), or the daemon's store thread",
    )
    automations_dir: Path = Path("automations")
    skills_dir: Path = Path("skills")
    concurrency: ConcurrencyConfig = ConcurrencyConfig()
    logging: LoggingConfig = LoggingConfig()
    reload: ReloadConfig = ReloadConfig()
    shutdown_grace: Duration = Field(
        timedelta(seconds=10), description="time running runs get after SIGTERM"
    )
    control_socket: Path | None = Field(
        None, description="Unix socket of the control API; default <state_dir>/control.sock"
    )
    console: bool = Field(True, description="print live run progress on stdout")
    http: HttpConfig = HttpConfig()
    center: CenterConfig = CenterConfig()
    replicas: ReplicaConfig = ReplicaConfig()
    engine: EngineConfig = EngineConfig()
    sources: SourcesConfig = SourcesConfig()
    slack: SlackConfig | None = Field(None, description="without it, runs report to the console")
    github: GitHubApiConfig = Field(
        GitHubApiConfig(), description="GitHub's REST API for the skills that use it"
    )
    base_dir: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _anchor_paths(self) -> DaemonConfig:
        base = self.base_dir
        for name in ("state_dir", "automations_dir", "skills_dir", "control_socket"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                object.__setattr__(self, name, (base / value).resolve())
        return self

    @property
    def socket_path(self) -> Path:
        """Where the control API listens."""
        return self.control_socket or self.state_dir / "control.sock"

    def resolved_database_url(self) -> str:
        """The database URL with secrets expanded (never store or log the result)."""
        if self.database_url is None:
            return f"sqlite:///{self.state_dir / 'nightshift.db'}"
        return self.database_url.resolve(base_dir=self.base_dir)


def find_config(explicit: Path | None = None) -> Path | None:
    """The config file to use, or None for the defaults."""
    if explicit is not None:
        return explicit
    env = os.environ.get("NIGHTSHIFT_CONFIG")
    if env:
        return Path(env)
    local = Path("config.yaml")
    return local if local.exists() else None


def load_config(path: Path | None = None) -> DaemonConfig:
    """Read and validate the daemon config; raises `ConfigError` listing every problem as
    `file:line: field: message`."""
    from .spec import NotText, read_text, validate_document

    found = find_config(path)
    if found is None:
        return DaemonConfig(base_dir=Path.cwd())
    try:
        text = read_text(found)
    except OSError as exc:
        raise ConfigError(f"{found}: cannot read: {exc.strerror}") from exc
    except NotText as exc:
        raise ConfigError(f"{found}:{exc.line}: {exc}") from None
    config, _, problems = validate_document(
        DaemonConfig, found, text, extra={"base_dir": found.resolve().parent}
    )
    if problems:
        ordered = sorted(problems, key=lambda p: p.line or 0)
        raise ConfigError("\n".join(str(p) for p in ordered))
    assert isinstance(config, DaemonConfig)
    return config
