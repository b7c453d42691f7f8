"""Slack, both ways: runs reported to a thread each (`reporter`, `delivery`, `blocks`) and
thread replies, buttons and commands read back as steering, decisions and triggers
(`replies`, over Socket Mode or the Events API)."""

from .delivery import PERMANENT, SlackDelivery, make_client
from .replies import SlackSource, parse_reply
from .reporter import SlackReporter

__all__ = [
    "PERMANENT",
    "SlackDelivery",
    "SlackReporter",
    "SlackSource",
    "make_client",
    "parse_reply",
]
