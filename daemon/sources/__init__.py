"""Event sources. Each turns what it sees into events for the dispatcher: schedules, files,
and the webhooks of GitHub, Alertmanager and generic senders (per source: authenticate,
normalise, match a trigger), plus saved payloads replayed for `nightshift test`."""

from .files import FileSource
from .github import WebhookRefused
from .incoming import GUARD, Dispatching, Incoming, stored_text
from .replay import KINDS, guess_github_event, incomings_from_payload
from .schedule import Scheduler, next_after

__all__ = [
    "GUARD",
    "KINDS",
    "Dispatching",
    "FileSource",
    "Incoming",
    "Scheduler",
    "WebhookRefused",
    "guess_github_event",
    "incomings_from_payload",
    "next_after",
    "stored_text",
]
