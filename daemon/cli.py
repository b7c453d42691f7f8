"""The `nightshift` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from . import __version__
from .config import DaemonConfig, load_config
from .control import ControlClient
from .errors import NightshiftError, Problem
from .loader import Loader, parse_skill
from .runs import RunStatus, envelope_of
from .runs.events import Envelope
from .spec.automation import describe_trigger
from .spec.inputs import parse_key_values
from .store import Store, utcnow


def _fmt_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    secs = ((end or utcnow()) - start).total_seconds()
    return f"{secs:.1f}s" if secs < 120 else f"{secs / 60:.1f}m"


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _open_store(config: DaemonConfig) -> Store:
    store = Store(config.resolved_database_url())
    store.create_all()
    return store


# -- commands -------------------------------------------------------------------------------
def cmd_run(config: DaemonConfig, args: argparse.Namespace) -> int:
    from . import logs
    from .app import Daemon

    logs.configure(config.logging.format, config.logging.level)
    asyncio.run(Daemon(config).run())
    return 0


def cmd_validate(config: DaemonConfig, args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    problems: list[Problem] = []
    automations = skills = 0
    if not paths:
        catalog = Loader(config.automations_dir, config.skills_dir).load()
        problems, automations, skills = (
            list(catalog.problems),
            len(catalog.automations),
            len(catalog.skills),
        )
    else:
        files: list[Path] = []
        for path in paths:
            if not path.exists():
                problems.append(Problem(path, None, "", "no such file or folder"))
            elif path.is_dir() and (path / "SKILL.md").exists():
                _, found = parse_skill(path)
                problems += found
                skills += not found
            elif path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
            else:
                files.append(path)
        if files:
            catalog = Loader(
                config.automations_dir, config.skills_dir, automation_files=files
            ).load()
            problems += [
                p
                for p in catalog.problems
                if p.path.suffix in (".yaml", ".yml") and "skills" not in p.path.parts[-3:-1]
            ]
            automations += len(catalog.automations)
    for problem in sorted(problems, key=lambda p: (str(p.path), p.line or 0)):
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"ok: {automations} automation(s), {skills} skill(s) valid")
    return 0


def cmd_schema(config: DaemonConfig, args: argparse.Namespace) -> int:
    from .spec import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def cmd_list(config: DaemonConfig, args: argparse.Namespace) -> int:
    from .sources import next_after

    daemon_nexts: dict[str, Any] | None = None
    try:
        with ControlClient(config.socket_path, timeout=2) as client:
            daemon_nexts = client.status()["automations"]
    except NightshiftError:
        pass
    catalog = Loader(config.automations_dir, config.skills_dir).load()
    now = utcnow()
    rows = [("NAME", "ENABLED", "TRIGGERS", "NEXT FIRE", "SKILL")]
    for name, a in sorted(catalog.automations.items()):
        triggers = ", ".join(describe_trigger(t) for t in a.triggers) or "manual"
        nxt: str = "-"
        if daemon_nexts is not None and name in daemon_nexts and daemon_nexts[name]["next_fire"]:
            nxt = _fmt_time(datetime.fromisoformat(daemon_nexts[name]["next_fire"]))
        elif a.enabled:
            fires = [f for _, t in a.schedule_triggers() if (f := next_after(t.build(), now))]
            nxt = _fmt_time(min(fires)) if fires else "-"
        rows.append((name, "yes" if a.enabled else "no", triggers, nxt, a.skill))
    # An automation whose file broke keeps running in the daemon as its last good version:
    # listed too, and marked, rather than missing.
    for name, info in sorted((daemon_nexts or {}).items()):
        if name not in catalog.automations:
            nxt = _fmt_time(datetime.fromisoformat(info["next_fire"])) if info["next_fire"] else "-"
            enabled = ("yes" if info["enabled"] else "no") + " (last good; file has problems)"
            shown = ", ".join(info.get("triggers", [])) or "manual"
            rows.append((name, enabled, shown, nxt, info.get("skill", "?")))
    _print_table(rows)
    if daemon_nexts is None:
        print("(daemon not running: next fires computed from now)", file=sys.stderr)
    for problem in catalog.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 0


def _print_env(env: Envelope) -> None:
    from .reporters import format_event

    print(format_event(env), flush=True)


def cmd_trigger(config: DaemonConfig, args: argparse.Namespace) -> int:
    with ControlClient(config.socket_path) as client:
        run_id = client.trigger(args.name, parse_key_values(args.input), force=args.force)
        print(f"run {run_id} queued for {args.name}")
        if not args.wait:
            return 0
        status = None
        for data in client.follow(run_id):
            env = Envelope.model_validate(data)
            _print_env(env)
            if env.event.type == "finished":
                status = env.event.status
        return 0 if status == RunStatus.SUCCEEDED else 1


def cmd_runs(config: DaemonConfig, args: argparse.Namespace) -> int:
    store = _open_store(config)
    try:
        runs = store.list_runs(
            automation=args.automation,
            statuses=[args.status] if args.status else None,
            limit=args.limit,
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return 0
    rows = [("ID", "AUTOMATION", "STATUS", "TRIGGER", "TRY", "CREATED", "TOOK", "SUMMARY")]
    for r in runs:
        rows.append(
            (
                str(r.id),
                r.automation,
                r.status,
                r.trigger,
                str(r.attempt),
                _fmt_time(r.created_at),
                _duration(r.started_at, r.finished_at),
                r.summary.splitlines()[0][:60] if r.summary else "",
            )
        )
    _print_table(rows)
    return 0


def cmd_show(config: DaemonConfig, args: argparse.Namespace) -> int:
    store = _open_store(config)
    try:
        run = store.get_run(args.run)
        events = [envelope_of(row) for row in store.run_events(args.run)]
        approvals = store.approvals(args.run)
        undelivered = [o for o in store.outbox(args.run) if o.status != "sent"]
    finally:
        store.close()
    if args.json:
        out = run.model_dump(mode="json")
        out["events"] = [e.to_json() for e in events]
        out["approvals"] = [a.model_dump(mode="json") for a in approvals]
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"run {run.id}  {run.automation}  {run.status}  "
        f"(attempt {run.attempt}, trigger {run.trigger})"
    )
    print(
        f"created {_fmt_time(run.created_at)}  started {_fmt_time(run.started_at)}  "
        f"finished {_fmt_time(run.finished_at)}  took {_duration(run.started_at, run.finished_at)}"
    )
    if run.retry_of:
        print(f"retry of run {run.retry_of}")
    if run.inputs:
        print("inputs: " + json.dumps(run.inputs))
    for a in approvals:
        by = f" by {a.decided_by}" if a.decided_by else ""
        print(f"approval {a.request_id!r} ({a.action}): {a.status}{by}")
    for o in undelivered:
        why = f": {o.error}" if o.error else ""
        print(f"slack {o.kind} to {o.channel}: {o.status}{why}")
    print()
    for env in events:
        _print_env(env)
        ev = env.event
        if ev.type == "command" and args.verbose and ev.output_tail:
            print("    " + ev.output_tail.replace("\n", "\n    "))
        elif ev.type == "artifact" and ev.content and (ev.kind == "report" or args.verbose):
            print("    " + ev.content.replace("\n", "\n    "))
    return 0


def cmd_events(config: DaemonConfig, args: argparse.Namespace) -> int:
    store = _open_store(config)
    try:
        if args.event is not None:
            found = store.get_event(args.event)
            if found is None:
                raise NightshiftError(f"event {args.event} not found")
            event, decisions = found
            print(f"event {event.id}  {event.source}/{event.type}  {_fmt_time(event.received_at)}")
            print(json.dumps(event.payload, indent=2))
            for d in decisions:
                run = f" → run {d.run_id}" if d.run_id else ""
                print(
                    f"  {d.automation}: {d.decision}{run}" + (f" ({d.detail})" if d.detail else "")
                )
            return 0
        for event in store.list_events(limit=args.limit):
            found = store.get_event(event.id or 0)
            decisions = found[1] if found else []
            summary = "; ".join(
                f"{d.automation}: {d.decision}" + (f" → run {d.run_id}" if d.run_id else "")
                for d in decisions
            )
            print(
                f"{event.id:>6}  {_fmt_time(event.received_at)}  "
                f"{event.source}/{event.type}  {summary}"
            )
    finally:
        store.close()
    return 0


def cmd_test(config: DaemonConfig, args: argparse.Namespace) -> int:
    """Dry run: what would this event do to this automation? Nothing runs, nothing is stored."""
    from .dispatch import evaluate
    from .sources.replay import KINDS, incomings_from_payload

    catalog = Loader(config.automations_dir, config.skills_dir).load()
    automation = catalog.automations.get(args.automation)
    if automation is None:
        raise NightshiftError(f"automation {args.automation!r} not found (or invalid)")
    try:
        payload = json.loads(Path(args.event).read_text())
    except (OSError, ValueError) as exc:
        raise NightshiftError(f"{args.event}: cannot read a JSON payload: {exc}") from None
    kinds = [t.type for t in automation.triggers if t.type in KINDS]
    source = args.source or (kinds[0] if kinds else None)
    if source is None:
        raise NightshiftError(f"{automation.name} has no event trigger; pass --source")
    webhook = args.webhook or next(
        (getattr(t, "source", None) for t in automation.triggers if t.type == "webhook"), None
    )
    incomings = incomings_from_payload(
        source, payload, config.sources, github_event=args.github_event, webhook=webhook
    )
    matched = False
    for incoming in incomings:
        decision = evaluate(automation, incoming, config.sources)
        print(f"event {incoming.source}/{incoming.type}")
        if decision is None:
            print(f"  {automation.name} does not listen to {incoming.source} events")
            continue
        detail = f": {decision.detail}" if decision.detail else ""
        print(f"  decision: {decision.decision}{detail}")
        if decision.run is not None:
            matched = True
            skill = catalog.skills.get(automation.skill)
            try:
                inputs = skill.resolve_inputs(decision.run.inputs) if skill else decision.run.inputs
            except ValueError as exc:
                print(f"  inputs would be refused: {exc}")
                return 1
            print(f"  would run {automation.skill} ({decision.run.trigger}) with inputs:")
            for key, value in inputs.items():
                print(f"    {key}: {json.dumps(value)}")
    return 0 if matched else 1


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
    add("list", cmd_list, "list automations and their next fire")
    p = add("trigger", cmd_trigger, "start an automation now, through the running daemon")
    p.add_argument("name")
    p.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--wait", "-w", action="store_true", help="follow the run until it ends")
    p.add_argument(
        "--force", action="store_true", help="run it even if disabled or still a placeholder"
    )
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
    p = add("explain", cmd_events, "why an event did or did not start runs, per automation")
    p.add_argument("event", type=int)
    p.set_defaults(limit=1)
    p = add("test", cmd_test, "dry run: match an event payload against an automation")
    p.add_argument("automation")
    p.add_argument("--event", "-e", required=True, help="JSON payload file")
    p.add_argument("--source", choices=["github", "alertmanager", "webhook", "file"])
    p.add_argument("--github-event", help="X-GitHub-Event of the payload (issues, workflow_run…)")
    p.add_argument("--webhook", help="generic webhook source name")
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
