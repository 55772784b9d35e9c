"""Prometheus collectors of the orchestrator, on an explicit registry so tests use a fresh one.

Two kinds of figures live here. Counters and histograms are counted by the replica that did
the work (``observe`` after each committed decision, ``_settle`` per message), so summing
them over replicas gives the cluster's figures. Gauges of shared state (sagas by status, in
flight, stuck, outbox lag) are read from the store by every replica's periodic state loop,
so every replica reports the same cluster-wide value: aggregate them with ``max``, not
``sum``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from orchestrator.core.audit import ACTIONS, RESULTS
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.effects import Decision, EmitEvent, SendCommand
from orchestrator.core.state import SagaState, SagaStatus, StepStatus

_SAGA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A forward step's end state, as the ``outcome`` label of the step duration.
_STEP_ENDS = (StepStatus.SUCCEEDED, StepStatus.REJECTED, StepStatus.UNKNOWN)


class OrchestratorMetrics:
    """What operators watch: outcomes, durations, retries, timeouts, dead letters, outbox lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # in this order: the exposition lists the families as they were declared
        self._saga_metrics(self.registry)
        self._step_metrics(self.registry)
        self._message_metrics(self.registry)
        self._state_gauges(self.registry)
        self.operator_actions = SharedCounter(
            "baton_operator_actions",
            "Operator actions (retry, resume, abort) by result, as the audit trails count them "
            "in Redis (cluster-wide: aggregate with max).",
            ("action", "result"),
        )
        self.operator_actions.set({(a, r): 0 for a in ACTIONS for r in RESULTS})
        self.registry.register(self.operator_actions)

    def _saga_metrics(self, r: CollectorRegistry) -> None:
        """Sagas started and finished, and how long they took."""
        self.started = Counter("baton_sagas_started_total", "Sagas started.", ["saga"], registry=r)
        self.finished = Counter(
            "baton_sagas_finished_total",
            "Sagas finished, by outcome (completed, compensated, failed).",
            ["saga", "outcome"],
            registry=r,
        )
        self.saga_duration = Histogram(
            "baton_saga_duration_seconds",
            "Start to finish.",
            ["saga", "outcome"],
            buckets=_SAGA_BUCKETS,
            registry=r,
        )

    def _step_metrics(self, r: CollectorRegistry) -> None:
        """Steps: durations, commands, retries, timeouts, compensations."""
        self.step_duration = Histogram(
            "baton_step_duration_seconds",
            "First forward send of a step to its end (succeeded, rejected, unknown).",
            ["saga", "step", "outcome"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.commands = Counter(
            "baton_commands_sent_total",
            "Commands sent, by phase.",
            ["saga", "step", "phase"],
            registry=r,
        )
        self.retries = Counter(
            "baton_step_retries_total",
            "Step retries scheduled.",
            ["saga", "step", "phase"],
            registry=r,
        )
        self.timeouts = Counter(
            "baton_step_timeouts_total",
            "Step replies that did not come in time.",
            ["saga", "step", "phase"],
            registry=r,
        )
        self.compensations = Counter(
            "baton_compensations_started_total",
            "Sagas that began compensating.",
            ["saga"],
            registry=r,
        )
        self.compensations_failed = Counter(
            "baton_compensations_failed_total",
            "Compensations that ran out of attempts: the saga is failed and needs an operator.",
            ["saga", "step"],
            registry=r,
        )

    def _message_metrics(self, r: CollectorRegistry) -> None:
        """Inbound messages: ignored, conflicting, handled, dead-lettered; the sweeper."""
        self.ignored = Counter(
            "baton_replies_ignored_total",
            "Events that changed nothing (stale_attempt, not_awaited, saga_finished, ...).",
            ["reason"],
            registry=r,
        )
        self.conflicts = Counter(
            "baton_concurrency_conflicts_total", "Optimistic write conflicts.", registry=r
        )
        self.messages = Counter(
            "baton_messages_handled_total",
            "Inbound messages, by queue and outcome.",
            ["queue", "outcome"],
            registry=r,
        )
        self.handling = Histogram(
            "baton_message_handling_seconds",
            "Time to handle one inbound message.",
            ["queue"],
            registry=r,
        )
        self.dead_letters = Counter(
            "baton_dead_letters_total",
            "Messages sent to a dead-letter queue.",
            ["queue", "reason"],
            registry=r,
        )
        self.outbox_swept = Counter(
            "baton_outbox_swept_total", "Outbox entries published by the sweeper.", registry=r
        )

    def _state_gauges(self, r: CollectorRegistry) -> None:
        """Gauges of shared state, refreshed by the runner's state loop (cluster-wide)."""
        self.by_status = Gauge(
            "baton_sagas",
            "Sagas the store holds, by status (cluster-wide).",
            ["status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "baton_sagas_in_flight",
            "Running or compensating sagas (cluster-wide).",
            registry=r,
        )
        self.stuck = Gauge(
            "baton_sagas_stuck",
            "Running or compensating sagas with no transition for longer than stuck_after_s "
            "(cluster-wide; counted up to a cap per status).",
            ["status"],
            registry=r,
        )
        self.stuck_after = Gauge(
            "baton_stuck_after_seconds",
            "The idle age after which a saga counts as stuck (configuration).",
            registry=r,
        )
        self.outbox_lag = Gauge(
            "baton_outbox_lag_seconds",
            "Age of the oldest unsent outbox entry; 0 when the outbox is empty (cluster-wide).",
            registry=r,
        )
        self.state_refreshed = Gauge(
            "baton_state_refreshed_timestamp_seconds",
            "When this replica last refreshed the shared-state gauges.",
            registry=r,
        )
        for status in SagaStatus:  # every series exists from the first scrape
            self.by_status.labels(status.value)
        for status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
            self.stuck.labels(status.value)

    def register(self, definitions: Iterable[SagaDefinition]) -> None:
        """Create every known saga's and step's series at 0, so each query has data from the
        first scrape and ``rate``/``increase`` see the first event as an increase."""
        for reason in ("stale_attempt", "not_awaited", "saga_finished"):
            self.ignored.labels(reason)
        for d in definitions:
            self.started.labels(d.name)
            self.compensations.labels(d.name)
            for outcome in ("completed", "compensated", "failed"):
                self.finished.labels(d.name, outcome)
                self.saga_duration.labels(d.name, outcome)
            for step in d.steps:
                phases = ("forward", "compensate") if step.compensation else ("forward",)
                for phase in phases:
                    self.commands.labels(d.name, step.name, phase)
                    self.retries.labels(d.name, step.name, phase)
                    self.timeouts.labels(d.name, step.name, phase)
                if step.compensation:
                    self.compensations_failed.labels(d.name, step.name)
                self.step_duration.labels(d.name, step.name, StepStatus.SUCCEEDED.value)

    def observe(self, decision: Decision, previous: SagaState | None = None) -> None:
        """Count what one committed decision did, from its history, effects and step records.

        ``previous`` is the state the decision was made from (None for a new saga); a forward
        step whose ``finished_at`` this decision set has its duration observed.
        """
        state = decision.state
        for entry in decision.history:
            labels = (state.saga, entry.step, entry.phase or "forward")
            if entry.what == "retry_scheduled":
                self.retries.labels(*labels).inc()
            elif entry.what == "timed_out":
                self.timeouts.labels(*labels).inc()
            elif entry.what == "compensating":
                self.compensations.labels(state.saga).inc()
        for name, record in state.steps.items():
            before = previous.steps.get(name) if previous is not None else None
            if record.status is StepStatus.COMPENSATION_FAILED and (
                before is None or before.status is not StepStatus.COMPENSATION_FAILED
            ):
                self.compensations_failed.labels(state.saga, name).inc()
            if (
                record.finished_at is not None
                and record.started_at is not None
                and record.status in _STEP_ENDS
                and (before is None or before.finished_at != record.finished_at)
            ):
                self.step_duration.labels(state.saga, name, record.status.value).observe(
                    max(record.finished_at - record.started_at, 0.0)
                )
        for effect in decision.effects:
            if isinstance(effect, SendCommand):
                self.commands.labels(state.saga, effect.step, effect.phase).inc()
            elif isinstance(effect, EmitEvent) and effect.event.event == "started":
                self.started.labels(state.saga).inc()
            elif isinstance(effect, EmitEvent):
                outcome = effect.event.event
                self.finished.labels(state.saga, outcome).inc()
                self.saga_duration.labels(state.saga, outcome).observe(
                    state.updated_at - state.started_at
                )

    def refresh_state(
        self,
        counts: dict[SagaStatus, int],
        stuck: dict[SagaStatus, int],
        outbox_lag_s: float,
        stuck_after_s: float,
        now: float,
    ) -> None:
        """Set the shared-state gauges from one read of the store."""
        for status, count in counts.items():
            self.by_status.labels(status.value).set(count)
        self.in_flight.set(
            counts.get(SagaStatus.RUNNING, 0) + counts.get(SagaStatus.COMPENSATING, 0)
        )
        for status, count in stuck.items():
            self.stuck.labels(status.value).set(count)
        self.stuck_after.set(stuck_after_s)
        self.outbox_lag.set(max(outbox_lag_s, 0.0))
        self.state_refreshed.set(now)


class SharedCounter:
    """A counter kept in shared state (Redis) by short-lived processes, exported as last read
    by the state loop: ``baton retry`` exits before any scrape, so it cannot count itself."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, str]) -> None:
        self._name, self._doc, self._labels = name, documentation, labels
        self.values: dict[tuple[str, str], float] = {}

    def set(self, values: Mapping[tuple[str, str], float]) -> None:
        """Replace the figures with one read's; series never seen before start at 0."""
        self.values = {**dict.fromkeys(self.values, 0.0), **values}

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._doc, labels=self._labels)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labels)
        for labels, value in sorted(self.values.items()):
            family.add_metric(labels, value)
        yield family
