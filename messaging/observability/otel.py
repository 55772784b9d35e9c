"""Optional OpenTelemetry export: one span per hop, sent over OTLP/HTTP.

On only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set *and* the ``otel`` extra is installed
(``pip install 'baton[otel]'``); otherwise nothing is imported and nothing is sent. The
exporter reads the standard ``OTEL_*`` variables itself (endpoint, headers, timeouts).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from typing import Any

import structlog

from messaging.observability import tracing

log = structlog.get_logger(__name__)
ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"


def span_hook(tracer: Any) -> tracing.SpanHook:
    """A ``tracing`` hook recording each hop as a finished span of ``tracer``."""
    from opentelemetry.context import Context  # noqa: PLC0415 - optional dependency
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    propagator = TraceContextTextMapPropagator()

    def record(
        parent: str, name: str, attributes: Mapping[str, str | int], started_ns: int | None
    ) -> str:
        context = propagator.extract({"traceparent": parent}) if parent else Context()
        span = tracer.start_span(
            name or "baton.hop", context=context, attributes=dict(attributes),
            start_time=started_ns,
        )  # fmt: skip
        span.end()
        ctx = span.get_span_context()
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"

    return record


def enable_otlp(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the span hook when the endpoint is configured; True when export is on."""
    if not environ.get(ENDPOINT_VARIABLE):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        log.warning("otel_export_unavailable", hint="pip install 'baton[otel]'")
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    atexit.register(provider.shutdown)  # flush what is batched when the process exits
    tracing.set_span_hook(span_hook(provider.get_tracer("baton")))
    log.info("otel_export_on", endpoint=environ[ENDPOINT_VARIABLE], service=service_name)
    return True
