"""Commands that read the store: runs, show, events, approvals, diff. They work whether or not
the daemon runs; `show` asks a running daemon what a queued run waits for."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from ..config import DaemonConfig
from ..control import ControlClient
from ..errors import NightshiftError
from ..runs import Artifact, RunStatus, envelope_of
from ._output import duration, fmt_time, open_store, print_envelope, print_json, print_table


def cmd_runs(config: DaemonConfig, args: argparse.Namespace) -> int:
    store = open_store(config)
    try:
        runs = store.list_runs(
            automation=args.automation,
            statuses=[args.status] if args.status else None,
            limit=args.limit,
        )
    finally:
        store.close()
    if args.json:
        print_json([r.model_dump(mode="json") for r in runs])
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
                fmt_time(r.created_at),
                duration(r.started_at, r.finished_at),
                r.summary.splitlines()[0][:60] if r.summary else "",
            )
        )
    print_table(rows)
    return 0


def _queue_reason(config: DaemonConfig, run_id: int) -> str | None:
    """What the running daemon says a queued run waits for (None when it does not answer)."""
    try:
        with ControlClient(config.socket_path, timeout=2) as client:
            reasons: dict[str, str] = client.status().get("queue_reasons", {})
    except NightshiftError:
        return None
    return reasons.get(str(run_id))


def cmd_show(config: DaemonConfig, args: argparse.Namespace) -> int:
    store = open_store(config)
    try:
        run = store.get_run(args.run)
        events = [envelope_of(row) for row in store.run_events(args.run)]
        approvals = store.approvals(args.run)
        undelivered = [o for o in store.outbox(args.run) if o.status != "sent"]
    finally:
        store.close()
    waits_for = _queue_reason(config, args.run) if run.status == RunStatus.QUEUED else None
    if args.json:
        out = run.model_dump(mode="json")
        out["waits_for"] = waits_for
        out["events"] = [e.to_json() for e in events]
        out["approvals"] = [a.model_dump(mode="json") for a in approvals]
        print_json(out)
        return 0
    print(
        f"run {run.id}  {run.automation}  {run.status}  "
        f"(attempt {run.attempt}, trigger {run.trigger})"
    )
    if waits_for:
        print(f"waits for: {waits_for}")
    print(
        f"created {fmt_time(run.created_at)}  started {fmt_time(run.started_at)}  "
        f"finished {fmt_time(run.finished_at)}  took {duration(run.started_at, run.finished_at)}"
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
        print_envelope(env)
        ev = env.event
        if ev.type == "command" and args.verbose and ev.output_tail:
            print("    " + ev.output_tail.replace("\n", "\n    "))
        elif ev.type == "artifact" and ev.content and (ev.kind == "report" or args.verbose):
            print("    " + ev.content.replace("\n", "\n    "))
    return 0


def _refused(config: DaemonConfig, args: argparse.Namespace) -> int:
    store = open_store(config)
    try:
        rows = store.refusals(args.limit)
    finally:
        store.close()
    if args.json:
        print_json([r.model_dump(mode="json") for r in rows])
        return 0
    table = [("RECEIVED", "SOURCE", "DELIVERY", "STATUS", "CLIENT", "REASON")]
    for r in rows:
        table.append(
            (
                fmt_time(r.received_at),
                r.source,
                r.delivery or "-",
                str(r.status),
                r.client or "-",
                r.reason[:80],
            )
        )
    print_table(table)
    return 0


def cmd_events(config: DaemonConfig, args: argparse.Namespace) -> int:
    if getattr(args, "refused", False):
        return _refused(config, args)
    store = open_store(config)
    try:
        if args.event is not None:
            found = store.get_event(args.event)
            if found is None:
                raise NightshiftError(f"event {args.event} not found")
            event, decisions = found
            if args.json:
                out = event.model_dump(mode="json")
                out["decisions"] = [d.model_dump(mode="json") for d in decisions]
                print_json(out)
                return 0
            print(f"event {event.id}  {event.source}/{event.type}  {fmt_time(event.received_at)}")
            print(json.dumps(event.payload, indent=2))
            for d in decisions:
                run = f" → run {d.run_id}" if d.run_id else ""
                print(
                    f"  {d.automation}: {d.decision}{run}" + (f" ({d.detail})" if d.detail else "")
                )
            return 0
        listed: list[dict[str, Any]] = []
        for event, decisions in store.events_with_decisions(limit=args.limit):
            entry = event.model_dump(mode="json", exclude={"payload"})
            entry["decisions"] = [d.model_dump(mode="json") for d in decisions]
            listed.append(entry)
    finally:
        store.close()
    if args.json:
        print_json(listed)
        return 0
    for entry in listed:
        summary = "; ".join(
            f"{d['automation']}: {d['decision']}" + (f" → run {d['run_id']}" if d["run_id"] else "")
            for d in entry["decisions"]
        )
        received = fmt_time(datetime.fromisoformat(entry["received_at"]))
        print(f"{entry['id']:>6}  {received}  {entry['source']}/{entry['type']}  {summary}")
    return 0


def cmd_approvals(config: DaemonConfig, args: argparse.Namespace) -> int:
    store = open_store(config)
    try:
        waiting = store.open_approvals()
    finally:
        store.close()
    if args.json:
        print_json(
            [
                {**a.model_dump(mode="json"), "automation": r.automation, "run_status": r.status}
                for a, r in waiting
            ]
        )
        return 0
    if not waiting:
        print("nothing waits for a person")
        return 0
    rows = [("RUN", "AUTOMATION", "ID", "ACTION", "ASKED", "EXPIRES", "DESCRIPTION")]
    for a, r in waiting:
        rows.append(
            (
                str(a.run_id),
                r.automation,
                a.request_id,
                a.action,
                fmt_time(a.requested_at),
                fmt_time(a.expires_at),
                a.description.splitlines()[0][:60] if a.description else "",
            )
        )
    print_table(rows)
    print("decide with: nightshift approve RUN [--id ID] | nightshift deny RUN [--reason …]")
    return 0


def cmd_diff(config: DaemonConfig, args: argparse.Namespace) -> int:
    """The run's diff against its base, as reported when it ended (kept with the run, so it
    reads the same after the worktree is gone)."""
    store = open_store(config)
    try:
        run = store.get_run(args.run)
        diffs = [
            env.event
            for env in map(envelope_of, store.run_events(args.run))
            if isinstance(env.event, Artifact) and env.event.kind == "diff"
        ]
    finally:
        store.close()
    if args.json:
        print_json(
            {"run": run.id, "diffs": [{"title": d.title, "diff": d.content or ""} for d in diffs]}
        )
        return 0
    if not diffs:
        finished = RunStatus(run.status).finished
        why = "changed no file" if finished else f"is {run.status}; its diff comes when it ends"
        print(f"run {run.id} {why}", file=sys.stderr)
        return 0 if finished else 1
    for d in diffs:
        print(f"# {d.title}", file=sys.stderr)
        sys.stdout.write(d.content or "")
    return 0


def cmd_status(config: DaemonConfig, args: argparse.Namespace) -> int:
    """The daemons on this database (replicas) with their last beat and the runs each
    executes; runs whose owner is no registered daemon are listed as such."""
    from ..runs import EXECUTING
    from ..store import utcnow

    store = open_store(config)
    try:
        replicas = store.live_replicas(timedelta(days=36_500))
        executing = store.list_runs(statuses=[s.value for s in EXECUTING], limit=10_000)
    finally:
        store.close()
    owned: dict[str | None, list[int]] = {}
    for run in executing:
        owned.setdefault(run.owner, []).append(run.id or 0)
    known = {r.id for r in replicas}
    now = utcnow()
    listed: list[dict[str, Any]] = [
        {
            "replica": r.id,
            "host": r.host,
            "pid": r.pid,
            "started_at": r.started_at.isoformat(),
            "beat_s_ago": round((now - r.heartbeat_at).total_seconds(), 1),
            "gone": now - r.heartbeat_at > config.replicas.gone_after,
            "runs": sorted(owned.get(r.id, [])),
        }
        for r in replicas
    ]
    orphans = sorted(i for owner, ids in owned.items() if owner not in known for i in ids)
    if args.json:
        print_json({"replicas": listed, "runs_of_no_replica": orphans})
        return 0
    rows = [("REPLICA", "HOST", "PID", "LAST BEAT", "RUNS")]
    for r in listed:
        beat = f"{r['beat_s_ago']}s ago" + (" (gone)" if r["gone"] else "")
        runs = ", ".join(map(str, r["runs"])) or "-"
        rows.append((str(r["replica"]), str(r["host"]), str(r["pid"]), beat, runs))
    print_table(rows)
    if orphans:
        print(f"executing runs of no registered daemon: {', '.join(map(str, orphans))}")
    return 0
