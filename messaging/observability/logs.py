"""structlog set-up: JSON when not on a TTY, context bound per message, secrets redacted.

Every line goes through one pipeline: Baton's own structlog calls and the standard-library
``logging`` records of the libraries (aio-pika, aiormq, redis, asyncio) are rendered by the
same renderer after the same redaction, so no library line escapes as plain text or with a
password in a URL.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import structlog

# Keys whose values never reach a log line, whatever logged them (compared lower-cased).
REDACTED_KEYS = frozenset(
    {
        "card_token", "card_number", "pan", "cvv", "cvc", "account_id", "account_number",
        "iban", "password", "passwd", "secret", "api_key", "authorization", "token",
    }
)  # fmt: skip
# ... and keys ending like these: client_secret, refresh_token, db_password, stripe_api_key
REDACTED_SUFFIXES = ("_token", "_secret", "_password", "_api_key")
# A card number (PAN) written into free text: 13-19 digits in a row, or groups of four split
# by spaces or dashes; never part of a longer word or dashed id (UUIDs, dates stay readable).
_PAN = re.compile(r"(?<![\w-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]?\d{1,3})?)(?![\w-])")
MASK = "***"
_MAX_DEPTH = 4
# The password of a URL's user info: scheme://user:PASSWORD@host (amqp, amqps, redis, rediss,
# http...). The password runs to the last "@" before the host, so one containing "@" or "/"
# is masked whole; the user name stays readable.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^\s]*@")


def masked(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    The one function every error and log line goes through (the log renderer, the CLI's
    error lines), so no command can forget it.
    """
    return _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text) if "://" in text else text


@lru_cache(maxsize=4096)  # asked for every key of every line; keys repeat
def sensitive(key: str) -> bool:
    lowered = key.lower()
    return lowered in REDACTED_KEYS or lowered.endswith(REDACTED_SUFFIXES)


def _scrub(value: Any, depth: int = 0) -> Any:
    """Mask sensitive keys in nested dicts and lists, and card numbers in strings."""
    if isinstance(value, str):
        return masked(_PAN.sub(MASK, value)) if len(value) >= 13 else value  # C-speed scans
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: MASK if sensitive(str(k)) else _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask sensitive keys (at any depth up to a few levels) and card numbers in text.

    Runs on every line, so it stays cheap: plain numbers, ids and short strings without
    digits pass through untouched.
    """
    for key, value in list(event.items()):
        if sensitive(key):
            event[key] = MASK
        elif isinstance(value, str | dict | list | tuple):
            event[key] = _scrub(value)
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Called once by a composition root; never at import.

    structlog renders Baton's lines; a ``ProcessorFormatter`` on the root logger renders the
    standard-library records of every library with the same processors, so both come out
    as one JSON object per line with the same fields and the same redaction.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # the traceback is text before redaction, so a URL in an exception is masked too
    ending: list[Any] = [structlog.processors.format_exc_info, redact, renderer]
    _route_standard_logging(level, shared, ending)
    structlog.configure(
        processors=[*shared, *ending],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # one write per line (print() writes the newline separately: two unbuffered writes)
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _route_standard_logging(level: str, shared: list[Any], ending: list[Any]) -> None:
    """Replace the root logger's handlers by one that renders through structlog."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *ending],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
