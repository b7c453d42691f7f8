"""The bundled repo-health automation, run for real against a git repository and a local
package-index double (PyPI's JSON API on 127.0.0.1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon

from .helpers import events, wait_event, wait_status

ROOT = Path(__file__).resolve().parents[1]
LATEST = {"requests": "2.32.3", "httpx": "0.28.1", "rich": "14.0.0"}


@pytest.fixture
def index_url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.strip("/").split("/")[-2]
            if name not in LATEST:
                self.send_error(404)
                return
            body = json.dumps({"info": {"name": name, "version": LATEST[name]}}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/pypi"
    server.shutdown()


@pytest.fixture
def target(tmp_path: Path) -> Path:
    repo = tmp_path / "target"
    (repo / "tests").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "t"\nversion = "1"\ndependencies = ["requests>=2.31", "httpx==0.23.0"]\n'
    )
    (repo / "requirements-dev.txt").write_text("rich==14.0.0\nunknown-pkg==1.0\n")
    (repo / "tests" / "test_ok.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "init"], check=True)
    (repo / "scratch.txt").write_text("untracked")
    return repo


def bundled(project: Project) -> None:
    shutil.copytree(ROOT / "skills" / "repo-health", project.skills / "repo-health")
    shutil.copy(ROOT / "automations" / "repo-health.yaml", project.automations)


async def test_health_check_reports_findings(
    project: Project, target: Path, index_url: str
) -> None:
    bundled(project)
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual(
            "repo-health",
            {"repository": str(target), "index_url": index_url, "lint": "none"},
            "test",
        )
        assert run.id is not None
        done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=60)
        assert done.summary == "3 finding(s) (git, outdated)"
        log = await events(d, run.id)
        report = next(e for e in log if e["type"] == "artifact")["content"]
        assert report.splitlines() == [
            "- [git] 1 untracked file(s)",
            "- [outdated] httpx 0.23.0 → 0.28.1",
            "- [outdated] requests 2.31 → 2.32.3",
        ]
        assert [e["title"] for e in log if e["type"] == "step"] == [
            "Git state",
            "Tests",
            "Outdated dependencies",
        ]
        assert any(
            e["type"] == "command" and "pytest" in e["command"] and e["exit_code"] == 0 for e in log
        )
        assert any("unknown-pkg: index lookup failed" in e.get("text", "") for e in log)


async def test_failing_tests_fail_the_run_and_steering_skips_a_step(
    project: Project, target: Path, index_url: str
) -> None:
    bundled(project)
    (target / "tests" / "test_ok.py").write_text("def test_bad():\n    assert False\n")
    (target / "tests" / "conftest.py").write_text(
        "import time, pathlib\n"
        "def pytest_sessionstart(session):\n"
        "    gate = pathlib.Path(__file__).parent.parent / 'gate'\n"
        "    while not gate.exists():\n"
        "        time.sleep(0.01)\n"
    )
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual(
            "repo-health",
            {"repository": str(target), "index_url": index_url, "lint": "none"},
            "test",
        )
        assert run.id is not None
        await wait_event(d, run.id, "step", title="Tests")
        await d.executor.steer(run.id, "skip outdated please", "alice")
        (target / "gate").touch()
        done = await wait_status(d, run.id, RunStatus.FAILED, timeout=60)
        log = await events(d, run.id)
        texts = [e.get("text", "") for e in log]
        assert "steering taken: skipping outdated" in texts
        assert "outdated: skipped as steered" in texts
        assert "Outdated dependencies" not in [e.get("title") for e in log]
        assert done.summary == "3 finding(s) (git, tests)"  # modified + untracked, failing tests
