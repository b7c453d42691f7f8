"""Commands that act through the running daemon's control API: trigger, follow, steer, approve
and deny, pause and resume, cancel, retry."""

from __future__ import annotations

import argparse
import json

from ..config import DaemonConfig
from ..control import ControlClient
from ..runs import Envelope, RunStatus
from ..spec import parse_key_values
from ._output import print_envelope


def _follow(client: ControlClient, run_id: int, as_json: bool = False) -> int:
    """Print the run's log, stored then live, until it ends; exit 0 when it succeeded."""
    status = None
    for data in client.follow(run_id):
        env = Envelope.model_validate(data)
        if as_json:
            print(json.dumps(data), flush=True)
        else:
            print_envelope(env)
        if env.event.type == "finished":
            status = env.event.status
    return 0 if status == RunStatus.SUCCEEDED else 1


def cmd_trigger(config: DaemonConfig, args: argparse.Namespace) -> int:
    with ControlClient(config.socket_path) as client:
        run_id = client.trigger(args.name, parse_key_values(args.input), force=args.force)
        print(f"run {run_id} queued for {args.name}")
        return _follow(client, run_id) if args.wait else 0


def cmd_follow(config: DaemonConfig, args: argparse.Namespace) -> int:
    with ControlClient(config.socket_path) as client:
        return _follow(client, args.run, args.json)


def cmd_steer(config: DaemonConfig, args: argparse.Namespace) -> int:
    with ControlClient(config.socket_path) as client:
        client.steer(args.run, args.message)
    print(f"steering message sent to run {args.run}")
    return 0


def cmd_decide(config: DaemonConfig, args: argparse.Namespace) -> int:
    approved = args.command == "approve"
    with ControlClient(config.socket_path) as client:
        approval_id = client.decide(args.run, approved, args.id, getattr(args, "reason", None))
    print(f"run {args.run}: {approval_id!r} {'approved' if approved else 'denied'}")
    return 0


def cmd_cancel(config: DaemonConfig, args: argparse.Namespace) -> int:
    with ControlClient(config.socket_path) as client:
        client.cancel(args.run, args.reason)
    print(f"run {args.run}: cancel requested")
    return 0


def cmd_pause(config: DaemonConfig, args: argparse.Namespace) -> int:
    with ControlClient(config.socket_path) as client:
        getattr(client, args.command)(args.run)
    print(f"run {args.run}: {args.command} requested")
    return 0


def cmd_retry(config: DaemonConfig, args: argparse.Namespace) -> int:
    with ControlClient(config.socket_path) as client:
        run_id = client.retry(args.run)
        print(f"run {run_id} queued: a retry of run {args.run}")
        return _follow(client, run_id) if args.wait else 0
