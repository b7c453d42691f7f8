"""Pushing a run's branch to its remote, with the token kept out of argv, URLs and logs."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from .client import GitHubError


def _remote_url(workdir: Path, remote: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(workdir), "remote", "get-url", remote],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.stdout.strip()


def push_branch(
    workdir: Path,
    branch: str,
    *,
    token: str | None = None,
    remote: str = "origin",
    ref: str = "HEAD",
) -> None:
    """Push `ref` of `workdir` to `refs/heads/<branch>` on `remote` (force: the branch is ours).

    For an https remote the token travels as an HTTP header set through git's environment
    config (GIT_CONFIG_COUNT), the way actions/checkout does it, so `ps` never shows it.
    """
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    url = _remote_url(workdir, remote)
    if token and url.startswith("https://"):
        parts = urlsplit(url)
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0=f"http.https://{parts.hostname}/.extraheader",
            GIT_CONFIG_VALUE_0=f"AUTHORIZATION: basic {basic}",
        )
    proc = subprocess.run(
        ["git", "-C", str(workdir), "push", "--force", remote, f"{ref}:refs/heads/{branch}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip()[-300:]
        if token:
            detail = detail.replace(token, "***")
        raise GitHubError(f"git push of {branch} failed: {detail}")
