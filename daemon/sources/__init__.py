"""Event sources. Each turns what it sees into events for the dispatcher: schedules, files,
and the webhooks of GitHub, Alertmanager and generic senders (per source: authenticate,
normalise, match a trigger), plus saved payloads replayed for `nightshift test`."""

from .files import FileSource
from .github import Addressed, WebhookRefused, match_mention
from .incoming import GUARD, Dispatching, Incoming, stored_text
from .mentions import Mention, find_mention, visible_text
from .replay import KINDS, guess_github_event, incomings_from_payload
from .schedule import Scheduler, next_after

__all__ = [
    "GUARD",
    "KINDS",
    "Addressed",
    "Dispatching",
    "FileSource",
    "Incoming",
    "Mention",
    "Scheduler",
    "WebhookRefused",
    "find_mention",
    "guess_github_event",
    "incomings_from_payload",
    "match_mention",
    "next_after",
    "stored_text",
    "visible_text",
]
