"""structlog set-up: JSON when not on a TTY, context bound per message, secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values never reach a log line, whatever logged them.
REDACTED_KEYS = frozenset({"card_token", "account_id", "password", "secret", "authorization"})


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask sensitive keys, including inside nested dicts one level down."""
    for key, value in list(event.items()):
        if key in REDACTED_KEYS:
            event[key] = "***"
        elif isinstance(value, dict):
            event[key] = {k: "***" if k in REDACTED_KEYS else v for k, v in value.items()}
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Called once by a composition root; never at import."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
