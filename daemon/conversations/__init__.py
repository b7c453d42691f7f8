"""Conversations in GitHub issues and pull requests: mentions of nightshift start, steer and
decide runs, for people with write access only."""

from .service import WRITERS, Conversations, Mentioned
from .status import StatusComments

__all__ = ["WRITERS", "Conversations", "Mentioned", "StatusComments"]
