"""What an event means for each automation: its triggers matched, `when` applied, inputs
rendered — a `Decision` per automation, the same for routing and for `nightshift test` — and,
for a mention, what the conversation is to do."""

from __future__ import annotations

from typing import Any

import structlog

from .config import SourcesConfig
from .conversations import Mentioned
from .errors import TemplateError
from .sources import GUARD, Incoming, alertmanager, files, github, webhooks
from .spec import (
    AlertmanagerTrigger,
    Automation,
    EventTrigger,
    GitHubMentionTrigger,
    GitHubTrigger,
    WebhookTrigger,
    templates,
)
from .store import (
    Decision,
    NewRun,
    RunGuard,
    utcnow,
)

log = structlog.get_logger(__name__)


def template_context(automation: Automation, event: dict[str, Any]) -> dict[str, Any]:
    """What templates in `inputs` and `when` can see."""
    return {"event": event, "automation": {"name": automation.name}, "now": utcnow()}


def decide(
    automation: Automation,
    event: dict[str, Any],
    trigger: str,
    overrides: dict[str, Any] | None = None,
    apply_when: bool = True,
) -> Decision:
    """Apply `when` and render the inputs: a matched decision with its run, or why not."""
    ctx = template_context(automation, event)
    try:
        if apply_when:
            for expr in automation.when:
                if not templates.evaluate(expr, ctx):
                    return Decision(automation.name, "filtered", f"when: {expr}")
        inputs = templates.render(dict(automation.inputs), ctx)
        policies = automation.policies
        key = None
        if policies.dedup_key is not None:
            key = str(templates.render(policies.dedup_key, ctx))
    except TemplateError as exc:
        return Decision(automation.name, "error", str(exc))
    except Exception as exc:
        # A template over a payload of unexpected shape (`payload.count > 3` with a string
        # count) fails in Python, not in Jinja: still this event's fault, never the intake's.
        return _error_decision(automation, "template", exc)
    inputs.update(overrides or {})
    cap = policies.cost_cap
    cost_cap = (cap.max_usd, cap.per) if cap else None
    guard = RunGuard(cost_cap=cost_cap) if cost_cap else None  # money binds everyone
    if apply_when:  # a person's explicit trigger is never deduplicated or throttled
        throttle = policies.throttle
        guard = RunGuard(
            dedup_window=policies.dedup_window,
            throttle=(throttle.max_runs, throttle.per) if throttle else None,
            on_active=policies.on_active,
            cost_cap=cost_cap,
        )
    run = NewRun(automation.name, trigger, inputs, key=key, guard=guard)
    return Decision(automation.name, "matched", "", run)


def _error_decision(automation: Automation, stage: str, exc: Exception) -> Decision:
    log.warning(
        "event could not be evaluated", automation=automation.name, stage=stage, exc_info=exc
    )
    return Decision(automation.name, "error", f"{stage}: {type(exc).__name__}: {exc}"[:500])


def match_trigger(trigger: EventTrigger, incoming: Incoming, sources: SourcesConfig) -> str | None:
    """None when `incoming` fires `trigger`; otherwise why not."""
    if isinstance(trigger, GitHubMentionTrigger):
        return "a mention is a conversation's (see `mentioned`)"
    if isinstance(trigger, GitHubTrigger):
        gh = sources.github
        return github.match(
            trigger,
            incoming,
            bot_login=gh.bot_login if gh else None,
            branch_prefix=gh.branch_prefix if gh else "nightshift/",
        )
    if isinstance(trigger, AlertmanagerTrigger):
        return alertmanager.match(trigger, incoming)
    if isinstance(trigger, WebhookTrigger):
        return webhooks.match(trigger, incoming)
    return files.match(trigger, incoming)


def mentioned(
    automation: Automation, incoming: Incoming, sources: SourcesConfig
) -> tuple[Decision, Mentioned | None] | None:
    """What a GitHub delivery means for `automation`'s mention triggers: a `mention` decision
    with what the conversation is to do (who asked what, and the run it would start), or why
    not; None when it has no mention trigger."""
    triggers = automation.event_triggers("github_mention") if incoming.source == "github" else []
    if not triggers:
        return None
    if not automation.enabled:
        return Decision(automation.name, "disabled"), None
    gh = sources.github
    reasons: list[str] = []
    for key, trigger in triggers:
        assert isinstance(trigger, GitHubMentionTrigger)
        try:
            found = github.match_mention(
                trigger,
                incoming,
                bot_login=gh.bot_login if gh else None,
                branch_prefix=gh.branch_prefix if gh else "nightshift/",
            )
        except Exception as exc:
            return _error_decision(automation, "trigger", exc), None
        if isinstance(found, str):
            reasons.append(found)
            continue
        view = {**incoming.template_view(), "mention": found.view()}
        decision = decide(automation, view, f"github_mention:{key}")
        if decision.run is None:
            return decision, None
        hidden = f"; hidden text removed: {'; '.join(found.mention.stripped)}"
        detail = f"{found.author} in {found.conversation}: {found.mention.request[:300]}"
        outcome = Decision(automation.name, "mention", (detail + hidden)[:1000])
        if not found.mention.stripped:
            outcome = Decision(automation.name, "mention", detail)
        return outcome, Mentioned(automation.name, found, decision.run, None)
    guard = all(r.startswith(GUARD) for r in reasons)
    detail = "; ".join(r.removeprefix(GUARD) for r in reasons)
    return Decision(automation.name, "guard" if guard else "filtered", detail), None


def classify(
    automation: Automation, incoming: Incoming, sources: SourcesConfig
) -> tuple[Decision | None, Mentioned | None]:
    """What `incoming` means for `automation` (None: it listens to no event of that kind),
    and for a mention what the conversation is to do — each trigger read once.

    The one function both routing and `nightshift test` use, so a dry run cannot disagree.
    """
    conversation = mentioned(automation, incoming, sources)
    if conversation is not None and (
        conversation[1] is not None or not automation.event_triggers(incoming.source)
    ):
        return conversation
    return _by_triggers(automation, incoming, sources), None


def _by_triggers(
    automation: Automation, incoming: Incoming, sources: SourcesConfig
) -> Decision | None:
    triggers = automation.event_triggers(incoming.source)
    if not triggers:
        return None
    if not automation.enabled:
        return Decision(automation.name, "disabled")
    reasons: list[str] = []
    for key, trigger in triggers:
        try:
            why = match_trigger(trigger, incoming, sources)
        except Exception as exc:
            # A payload with a field of the wrong type: decided as an error for this
            # automation and stored, so the sender is not told to retry what always fails.
            return _error_decision(automation, "trigger", exc)
        if why is None:
            # A generic webhook's trigger is known by its source's name (`webhook:deploys`),
            # not by its position in the file.
            if isinstance(trigger, WebhookTrigger) and trigger.id is None:
                key = trigger.source
            return decide(automation, incoming.template_view(), f"{incoming.source}:{key}")
        reasons.append(why)
    guard = all(r.startswith(GUARD) for r in reasons)
    detail = "; ".join(r.removeprefix(GUARD) for r in reasons)
    return Decision(automation.name, "guard" if guard else "filtered", detail)
