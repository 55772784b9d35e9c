"""The hook through which a worker reports each handled message; Prometheus plugs in here."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

UNKNOWN_KIND = "unknown"
_HANDLING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class WorkerMetrics(Protocol):
    """Receives one observation per handled message. Labels must stay low-cardinality."""

    def observe(self, *, participant: str, kind: str, outcome: str, seconds: float) -> None: ...


class NoMetrics:
    """The default: observations go nowhere."""

    def observe(self, *, participant: str, kind: str, outcome: str, seconds: float) -> None:
        return None


class PrometheusWorkerMetrics:
    """Participant metrics on an explicit registry (tests give each worker a fresh one).

    ``kind`` is a command contract name and ``outcome`` one of the worker's few outcomes
    (``protocol.Outcome``: ok, rejected, error, duplicate, cancelled, expired, retry, busy,
    dead_lettered, publish_failed): both bounded.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._kinds: frozenset[str] | None = None  # set by register()
        self.handled = Counter(
            "baton_participant_messages_total",
            "Commands a participant handled, by outcome.",
            ["participant", "kind", "outcome"],
            registry=self.registry,
        )
        self.handling = Histogram(
            "baton_participant_handling_seconds",
            "Receipt of a command to its reply published and the command acked.",
            ["participant", "kind"],
            buckets=_HANDLING_BUCKETS,
            registry=self.registry,
        )

    def register(self, participant: str, kinds: list[str]) -> None:
        """Create the series up front so a quiet participant still shows a rate of 0, and
        remember the kinds: any other kind (a stray message's type, chosen by whoever sent
        it) is counted as ``unknown`` so a sender cannot blow up the label set."""
        self._kinds = frozenset(kinds)
        for kind in kinds:
            for outcome in ("ok", "dead_lettered"):
                self.handled.labels(participant, kind, outcome)
            self.handling.labels(participant, kind)
        self.handled.labels(participant, UNKNOWN_KIND, "dead_lettered")

    def observe(self, *, participant: str, kind: str, outcome: str, seconds: float) -> None:
        if self._kinds is not None and kind not in self._kinds:
            kind = UNKNOWN_KIND
        self.handled.labels(participant, kind, outcome).inc()
        self.handling.labels(participant, kind).observe(seconds)
