"""The `nightshift` command: the parser and its entry point. The commands live in the modules
beside this one, by what they touch: the files, the store, the running daemon."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import load_config
from ..errors import NightshiftError
from ..runs import RunStatus
from ._actions import (
    cmd_cancel,
    cmd_decide,
    cmd_follow,
    cmd_pause,
    cmd_retry,
    cmd_steer,
    cmd_trigger,
)
from ._files import cmd_db, cmd_list, cmd_run, cmd_schema, cmd_test, cmd_validate
from ._reads import cmd_approvals, cmd_diff, cmd_events, cmd_runs, cmd_show, cmd_status

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="config.yaml to use")
    parser = argparse.ArgumentParser(
        prog="nightshift",
        description="Run YAML automations through agent skills, supervised live.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"nightshift {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=func)
        return p

    add("run", cmd_run, "run the daemon in the foreground")
    p = add("validate", cmd_validate, "check automation and skill files; exit 1 on any problem")
    p.add_argument("paths", nargs="*", help="files or folders (default: the configured folders)")
    p = add("schema", cmd_schema, "write the JSON Schemas of the YAML formats")
    p.add_argument("--out", default="schema", help="folder to write to (default: schema/)")
    p = add("db", cmd_db, "the database's schema: where it stands, or bring it to this build's")
    p.add_argument("action", choices=["status", "upgrade"])
    p = add("list", cmd_list, "list automations and their next fire")
    p.add_argument("--json", action="store_true")
    p = add("trigger", cmd_trigger, "start an automation now, through the running daemon")
    p.add_argument("name")
    p.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--wait", "-w", action="store_true", help="follow the run until it ends")
    p.add_argument(
        "--force", action="store_true", help="run it even if disabled or still a placeholder"
    )
    p = add("status", cmd_status, "the daemons on this database and the runs each executes")
    p.add_argument("--json", action="store_true")
    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument("--automation", "-a")
    p.add_argument("--status", "-s", choices=[s.value for s in RunStatus])
    p.add_argument("--limit", "-n", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p = add("show", cmd_show, "show a run and its whole step log")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", "-v", action="store_true", help="include command output")
    p = add(
        "events", cmd_events, "list received events, or explain one: what it meant per automation"
    )
    p.add_argument("event", type=int, nargs="?")
    p.add_argument("--limit", "-n", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--refused", action="store_true", help="deliveries the HTTP server refused, and why"
    )
    p = add("explain", cmd_events, "why an event did or did not start runs, per automation")
    p.add_argument("event", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(limit=1)
    p = add("approvals", cmd_approvals, "list the approval requests waiting for a person")
    p.add_argument("--json", action="store_true")
    p = add("diff", cmd_diff, "print a run's diff against its base (as it was when it ended)")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p = add("follow", cmd_follow, "print a run's step log and follow it live until it ends")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true", help="one JSON event per line")
    p = add("test", cmd_test, "dry run: match an event payload against an automation")
    p.add_argument("automation")
    p.add_argument("--event", "-e", required=True, help="JSON payload file")
    p.add_argument("--source", choices=["github", "alertmanager", "webhook", "file"])
    p.add_argument("--github-event", help="X-GitHub-Event (default: read from the payload)")
    p.add_argument("--webhook", help="generic webhook source name")
    p.add_argument("--json", action="store_true")
    p = add("steer", cmd_steer, "send a steering message to a running run")
    p.add_argument("run", type=int)
    p.add_argument("message")
    for verb in ("approve", "deny"):
        p = add(verb, cmd_decide, f"{verb} a run's pending approval request")
        p.add_argument("run", type=int)
        p.add_argument("--id", help="approval id (default: the oldest pending one)")
        if verb == "deny":
            p.add_argument("--reason")
    for verb, text in (
        ("pause", "pause a running run: its processes stop where they are until `resume`"),
        ("resume", "resume a paused run: its processes continue where they stopped"),
    ):
        p = add(verb, cmd_pause, text)
        p.add_argument("run", type=int)
    p = add("cancel", cmd_cancel, "cancel a queued or running run")
    p.add_argument("run", type=int)
    p.add_argument("--reason")
    p = add("retry", cmd_retry, "run a finished run again: same automation, same inputs")
    p.add_argument("run", type=int)
    p.add_argument("--wait", "-w", action="store_true", help="follow the new run until it ends")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nightshift` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None))
        return int(args.func(config, args))
    except NightshiftError as exc:
        print(f"nightshift: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `nightshift show 9 | head`: the reader has what it wanted. Point stdout at
        # /dev/null so the interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


if __name__ == "__main__":
    sys.exit(main())
