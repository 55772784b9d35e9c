"""W3C trace context: one trace id follows a saga through every message and log line."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id(traceparent: str) -> str:
    """The trace id of a valid traceparent, else empty."""
    match = _TRACEPARENT.match(traceparent)
    return match.group(1) if match else ""


def continue_or_start(traceparent: str) -> str:
    """Keep a caller's valid trace; start a new one for a missing or malformed header."""
    return traceparent if trace_id(traceparent) else new_traceparent()
