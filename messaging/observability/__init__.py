"""What a process tells its operators: structured logs, the health and metrics server, W3C
trace context and its optional OpenTelemetry export."""
