"""Logging: structlog to stderr, human or JSON, every value passed through redaction."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from .secrets import redactor

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_threshold = logging.DEBUG  # until `configure` says otherwise, everything is logged


def enabled(level: str) -> bool:
    """Whether a message at `level` is logged at all; a hot path checks before it builds one
    (structlog's lazy logger binds anew on every call, filtered or not)."""
    return _LEVELS[level] >= _threshold


def redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask secrets in every field of a log entry."""
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[key] = redactor.redact(value)
        elif isinstance(value, dict | list):
            event_dict[key] = redactor.redact_obj(value)
    return event_dict


def configure(fmt: str = "human", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up the processor pipeline once per process."""
    global _threshold
    _threshold = _LEVELS[level]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through stdlib logging (uvicorn, sqlalchemy, slack-sdk) go through
    # the same renderer and redaction, so a JSON log stays one JSON object per line.
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),  # `extra={...}` fields, as structlog's own
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_processor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(_LEVELS[level], logging.WARNING))
