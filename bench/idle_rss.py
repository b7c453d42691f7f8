"""Idle daemon RSS ≤ 100 MB.

A real `nightshift run` process with the bundled automations, idle after start-up. Baseline,
same run: a bare Python interpreter that imported nothing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon.control import ControlClient
from daemon.errors import ControlError

from ._util import Result, rss_mb

ROOT = Path(__file__).resolve().parents[1]


def main() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            f"state_dir: {tmp}/state\nautomations_dir: {ROOT}/automations\nskills_dir: {ROOT}/skills\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with ControlClient(Path(tmp) / "state" / "control.sock", timeout=1) as c:
                        c.status()
                    break
                except ControlError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            time.sleep(3)  # idle
            daemon_rss, bare_rss = rss_mb(proc.pid), rss_mb(bare.pid)
        finally:
            proc.terminate()
            bare.kill()
            proc.wait(20)
            bare.wait()
    return [
        Result(
            "idle daemon RSS",
            daemon_rss,
            "MB",
            "bare python",
            bare_rss,
            "≤ 100 MB",
            daemon_rss <= 100,
        ),
    ]
