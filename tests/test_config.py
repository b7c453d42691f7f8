"""Daemon config: defaults, relative paths, secrets by reference (never resolved in storage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import DaemonConfig, load_config
from daemon.errors import ConfigError, SecretError
from daemon.secrets import redactor


def test_no_config_uses_the_checkout_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NIGHTSHIFT_CONFIG", raising=False)
    config = load_config()
    assert config.automations_dir == tmp_path / "automations"
    assert (
        config.resolved_database_url() == f"sqlite:///{tmp_path / '.nightshift' / 'nightshift.db'}"
    )
    assert config.socket_path == tmp_path / ".nightshift" / "control.sock"


def test_secret_references_resolve_only_on_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pgpass").write_text("file-secret-999\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "database_url: postgresql+psycopg://bot:${PGPASS}@db/x?x=${file:pgpass}\nstate_dir: state\n"
    )
    monkeypatch.setenv("PGPASS", "env-secret-777")
    config = load_config(cfg)
    assert config.state_dir == tmp_path / "state"
    dumped = config.model_dump_json()
    assert "${PGPASS}" in dumped and "env-secret-777" not in dumped
    assert "env-secret-777" not in repr(config)
    url = config.resolved_database_url()
    assert url == "postgresql+psycopg://bot:env-secret-777@db/x?x=file-secret-999"
    assert redactor.redact(url) == "postgresql+psycopg://bot:***@db/x?x=***"


def test_missing_secret_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    config = DaemonConfig.model_validate({"database_url": "${NOPE_NOT_SET}", "base_dir": tmp_path})
    with pytest.raises(SecretError, match="environment variable NOPE_NOT_SET is not set"):
        config.resolved_database_url()


def test_config_errors_name_file_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("concurrency: {max_runs: 0}\nlogging: {format: xml}\nsurprise: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    lines = str(err.value).splitlines()
    assert lines == [
        f"{cfg}:1: concurrency.max_runs: Input should be greater than or equal to 1",
        f"{cfg}:2: logging.format: Input should be 'human' or 'json'",
        f"{cfg}:3: surprise: unknown field 'surprise'",
    ]


def test_the_example_config_loads_and_references_no_unset_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The README says to copy it: a copy must start a daemon whose every source is usable.
    example = Path(__file__).parent.parent / "config.example.yaml"
    for name in ("GITHUB_WEBHOOK_SECRET", "ALERTMANAGER_TOKEN", "DEPLOY_HOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config = load_config(example)
    assert config.sources.github is None and config.sources.alertmanager is None
    assert config.sources.webhooks == {}
