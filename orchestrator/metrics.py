"""Prometheus collectors of the orchestrator, on an explicit registry so tests use a fresh one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from orchestrator.effects import Decision, EmitEvent, SendCommand

_SAGA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class OrchestratorMetrics:
    """What operators watch: outcomes, durations, retries, timeouts, dead letters, outbox lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.started = Counter("baton_sagas_started_total", "Sagas started.", ["saga"], registry=r)
        self.finished = Counter(
            "baton_sagas_finished_total",
            "Sagas finished, by outcome.",
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
        self.ignored = Counter(
            "baton_replies_ignored_total", "Events that changed nothing.", ["reason"], registry=r
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

    def observe(self, decision: Decision) -> None:
        """Count what one committed decision did, from its history and effects."""
        state = decision.state
        for entry in decision.history:
            labels = (state.saga, entry.step, entry.phase or "forward")
            if entry.what == "retry_scheduled":
                self.retries.labels(*labels).inc()
            elif entry.what == "timed_out":
                self.timeouts.labels(*labels).inc()
            elif entry.what == "compensating":
                self.compensations.labels(state.saga).inc()
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
