"""Reading a W3C traceparent: pure, so the engine can put a saga's trace id in its timeline
without importing the tracing machinery (``messaging.observability.tracing``)."""

from __future__ import annotations

import re

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def trace_id(traceparent: str) -> str:
    """The trace id of a valid traceparent, else empty."""
    match = TRACEPARENT.match(traceparent)
    return match.group(1) if match else ""


def span_id(traceparent: str) -> str:
    """The span (parent) id of a valid traceparent, else empty."""
    match = TRACEPARENT.match(traceparent)
    return match.group(2) if match else ""
