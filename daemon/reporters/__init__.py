"""Reporters subscribe to the RunEvent stream and show runs to people."""

from .console import ConsoleReporter, format_event

__all__ = ["ConsoleReporter", "format_event"]
