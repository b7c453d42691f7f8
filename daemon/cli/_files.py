"""Commands over the automation and skill files: run, validate, schema, list, test."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import DaemonConfig
from ..control import ControlClient
from ..errors import NightshiftError, Problem
from ..loader import Loader, parse_skill
from ..spec import describe_trigger
from ..store import utcnow
from ._output import fmt_time, print_json, print_table


def cmd_run(config: DaemonConfig, args: argparse.Namespace) -> int:
    from .. import logs
    from ..app import Daemon

    logs.configure(config.logging.format, config.logging.level)
    asyncio.run(Daemon(config).run())
    return 0


def cmd_validate(config: DaemonConfig, args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    problems: list[Problem] = []
    automations = skills = 0
    if not paths:
        catalog = Loader(
            config.automations_dir, config.skills_dir, owners=_daemon_owners(config)
        ).load()
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
    from ..spec import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def _daemon_owners(config: DaemonConfig) -> dict[str, Path]:
    """The file the running daemon took each automation from (none when it is not running)."""
    try:
        with ControlClient(config.socket_path, timeout=2) as client:
            running = client.status()["automations"]
    except NightshiftError:
        return {}
    return _sources(running)


def _sources(running: dict[str, Any]) -> dict[str, Path]:
    return {name: Path(info["source"]) for name, info in running.items() if info.get("source")}


def _listed(config: DaemonConfig) -> tuple[list[dict[str, Any]], list[str], bool]:
    """(one entry per automation, the files' problems, whether the daemon answered)."""
    from ..sources import next_after

    daemon_nexts: dict[str, Any] | None = None
    try:
        with ControlClient(config.socket_path, timeout=2) as client:
            daemon_nexts = client.status()["automations"]
    except NightshiftError:
        pass
    catalog = Loader(
        config.automations_dir, config.skills_dir, owners=_sources(daemon_nexts or {})
    ).load()
    now = utcnow()
    entries: list[dict[str, Any]] = []
    for name, a in sorted(catalog.automations.items()):
        nxt: datetime | None = None
        if daemon_nexts is not None and name in daemon_nexts and daemon_nexts[name]["next_fire"]:
            nxt = datetime.fromisoformat(daemon_nexts[name]["next_fire"])
        elif a.enabled:
            fires = [f for _, t in a.schedule_triggers() if (f := next_after(t.build(), now))]
            nxt = min(fires) if fires else None
        triggers = [describe_trigger(t) for t in a.triggers]
        entries.append(_entry(name, a.enabled, triggers, nxt, a.skill, last_good=False))
    # An automation whose file broke keeps running in the daemon as its last good version:
    # listed too, and marked, rather than missing.
    for name, info in sorted((daemon_nexts or {}).items()):
        if name not in catalog.automations:
            nxt = datetime.fromisoformat(info["next_fire"]) if info["next_fire"] else None
            triggers = info.get("triggers", [])
            entries.append(
                _entry(name, info["enabled"], triggers, nxt, info.get("skill", "?"), last_good=True)
            )
    return entries, [str(p) for p in catalog.problems], daemon_nexts is not None


def _entry(
    name: str,
    enabled: bool,
    triggers: list[str],
    next_fire: datetime | None,
    skill: str,
    *,
    last_good: bool,
) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": enabled,
        "triggers": triggers,
        "next_fire": next_fire.isoformat() if next_fire else None,
        "skill": skill,
        "last_good_version": last_good,
    }


def cmd_list(config: DaemonConfig, args: argparse.Namespace) -> int:
    entries, problems, answered = _listed(config)
    if args.json:
        print_json({"automations": entries, "problems": problems, "daemon_running": answered})
        return 0
    rows = [("NAME", "ENABLED", "TRIGGERS", "NEXT FIRE", "SKILL")]
    for e in entries:
        enabled = "yes" if e["enabled"] else "no"
        if e["last_good_version"]:
            enabled += " (last good; file has problems)"
        nxt = fmt_time(datetime.fromisoformat(e["next_fire"])) if e["next_fire"] else "-"
        rows.append((e["name"], enabled, ", ".join(e["triggers"]) or "manual", nxt, e["skill"]))
    print_table(rows)
    if not answered:
        print("(daemon not running: next fires computed from now)", file=sys.stderr)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 0


def cmd_test(config: DaemonConfig, args: argparse.Namespace) -> int:
    """Dry run: what would this event do to this automation? Nothing runs, nothing is stored."""
    from ..decisions import classify
    from ..sources import KINDS, guess_github_event, incomings_from_payload

    catalog = Loader(config.automations_dir, config.skills_dir).load()
    automation = catalog.automations.get(args.automation)
    if automation is None:
        raise NightshiftError(f"automation {args.automation!r} not found (or invalid)")
    try:
        payload = json.loads(Path(args.event).read_text())
    except (OSError, ValueError) as exc:
        raise NightshiftError(f"{args.event}: cannot read a JSON payload: {exc}") from None
    # A mention trigger listens to GitHub's deliveries.
    types = ["github" if t.type == "github_mention" else t.type for t in automation.triggers]
    kinds = [t for t in types if t in KINDS]
    source = args.source or (kinds[0] if kinds else None)
    if source is None:
        raise NightshiftError(f"{automation.name} has no event trigger; pass --source")
    webhook = args.webhook or next(
        (getattr(t, "source", None) for t in automation.triggers if t.type == "webhook"), None
    )
    github_event = args.github_event
    if source == "github" and not github_event:
        github_event = guess_github_event(payload)
        if github_event and not args.json:
            print(f"(--github-event {github_event}, read from the payload's fields)")
    incomings = incomings_from_payload(
        source, payload, config.sources, github_event=github_event, webhook=webhook
    )
    # A disabled automation is judged as if it were enabled, so the answer says what it would
    # do once switched on, not only that it is off.
    judged = automation.model_copy(update={"enabled": True})
    results: list[dict[str, Any]] = []
    for incoming in incomings:
        decision, heard = classify(judged, incoming, config.sources)
        result: dict[str, Any] = {"event": f"{incoming.source}/{incoming.type}"}
        results.append(result)
        if decision is None:
            result["decision"] = None
            continue
        result |= {"decision": decision.decision, "detail": decision.detail}
        if heard is not None:
            # What the conversation would start, if the author may ask (write access).
            decision = heard.run_decision()
        if decision.run is not None:
            skill = catalog.skills.get(automation.skill)
            try:
                inputs = skill.resolve_inputs(decision.run.inputs) if skill else decision.run.inputs
            except ValueError as exc:
                result |= {"decision": "refused", "detail": f"inputs would be refused: {exc}"}
                continue
            result |= {"trigger": decision.run.trigger, "inputs": inputs}
    # Exit 0 only when the event would start a run now.
    matched = any("inputs" in r for r in results) and automation.enabled
    if args.json:
        print_json(
            {"automation": automation.name, "enabled": automation.enabled, "events": results}
        )
        return 0 if matched else 1
    if not automation.enabled:
        print(f"{automation.name} is disabled (enabled: false); if it were enabled:")
    for r in results:
        print(f"event {r['event']}")
        if r["decision"] is None:
            print(f"  {automation.name} does not listen to {r['event'].split('/')[0]} events")
            continue
        detail = f": {r['detail']}" if r.get("detail") else ""
        print(f"  decision: {r['decision']}{detail}")
        if "inputs" in r:
            would = "would run" if automation.enabled else "would run, once enabled,"
            print(f"  {would} {automation.skill} ({r['trigger']}) with inputs:")
            for key, value in r["inputs"].items():
                print(f"    {key}: {json.dumps(value)}")
    return 0 if matched else 1


def cmd_db(config: DaemonConfig, args: argparse.Namespace) -> int:
    """`db status` says where the database's schema stands; `db upgrade` brings it to this
    build's (safe to repeat; stop the daemon first, as for any schema change)."""
    from ..store import Store, schema

    store = Store(config.resolved_database_url())
    try:
        before = schema.current(store.engine)
        if args.action == "upgrade":
            schema.upgrade(store.engine)
            after = schema.current(store.engine)
            print(
                f"database schema: {before or 'empty'} → {after}"
                if before != after
                else f"database schema: {after} (already this build's)"
            )
            return 0
        want = schema.head()
        state = "up to date" if before == want else f"behind: this build needs {want}"
        print(f"database schema: {before or 'empty'} ({state})")
        return 0 if before == want else 1
    finally:
        store.close()
