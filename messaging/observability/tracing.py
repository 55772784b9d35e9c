"""W3C trace context: one trace id follows a saga through every message and log line.

Every hop is a child span: a message carries the trace id of the saga and a span id of its
own (``child``), so a tracing backend draws start -> command -> reply as a tree. By default
span ids are just random; when OpenTelemetry export is on (``messaging.observability.otel``), a hook
records a real span per hop and ``child`` returns that span's context instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from contracts.traceparent import TRACEPARENT, span_id, trace_id

__all__ = ["child", "new_traceparent", "set_span_hook", "span_id", "trace_id"]


# (parent traceparent or "", span name, attributes, start time in ns or None) -> traceparent
SpanHook = Callable[[str, str, Mapping[str, str | int], int | None], str]
_hook: SpanHook | None = None


def set_span_hook(hook: SpanHook | None) -> None:
    """Install (or remove, with None) the exporter that records each hop as a span."""
    global _hook  # noqa: PLW0603 - one exporter per process, installed by the composition root
    _hook = hook


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child(
    parent: str,
    name: str = "",
    attributes: Mapping[str, str | int] | None = None,
    started_ns: int | None = None,
) -> str:
    """The traceparent of a new span under ``parent``: same trace id, new span id.

    A missing or malformed parent starts a new trace. ``name``, ``attributes`` and
    ``started_ns`` only matter to an installed exporter.
    """
    if _hook is not None:
        try:
            return _hook(parent if trace_id(parent) else "", name, attributes or {}, started_ns)
        except Exception:  # tracing must never break message handling: fall back below
            pass
    match = TRACEPARENT.match(parent)
    if match is None:
        return new_traceparent()
    return f"00-{match.group(1)}-{secrets.token_hex(8)}-{match.group(3)}"
