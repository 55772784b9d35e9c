"""The operator's dashboard as data: rows of charts, each chart its queries and display.

Plain data so the rows read like the dashboard and a test can list every query; turning a
chart into Grafana's model is ``baton.dashboards.grafana``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The queues whose depths the dashboard shows (RabbitMQ's per-object metrics).
_WORK_QUEUES = 'queue=~".*baton[.](start|replies|cmd[.].+)"'


@dataclass(frozen=True)
class Chart:
    """One panel: a time series or a single stat, its unit and its (PromQL, legend) targets.

    ``alarm_from`` colours a stat red from that value up (green below); ``good_from`` the
    other way round (red below, green from it). ``up_down`` maps 0/1 to DOWN/UP.
    """

    title: str
    kind: Literal["timeseries", "stat"]
    unit: str
    targets: tuple[tuple[str, str], ...]
    alarm_from: float | None = None
    good_from: float | None = None
    up_down: bool = False
    description: str = ""


@dataclass(frozen=True)
class Row:
    """A titled row of charts, three to a line."""

    title: str
    charts: tuple[Chart, ...]


def _series(title: str, unit: str, *targets: tuple[str, str]) -> Chart:
    return Chart(title, "timeseries", unit, targets)


def _stat(title: str, expr: str, legend: str, **display: float | bool) -> Chart:
    return Chart(title, "stat", "short", ((expr, legend),), **display)  # type: ignore[arg-type]


def _quantile(q: float, by: str, histogram: str, selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({histogram}_bucket{selector}[5m])))"


_SUCCEEDED = '{outcome="succeeded"}'

THROUGHPUT = Row("Throughput and outcomes", (
    _series("Sagas started /s", "ops",
            ("sum by (saga) (rate(baton_sagas_started_total[1m]))", "{{saga}}")),
    _series("Sagas finished /s by outcome", "ops",
            ("sum by (outcome) (rate(baton_sagas_finished_total[1m]))", "{{outcome}}")),
    _series("Saga duration p50 / p99", "s",
            (_quantile(0.5, "saga", "baton_saga_duration_seconds"), "p50 {{saga}}"),
            (_quantile(0.99, "saga", "baton_saga_duration_seconds"), "p99 {{saga}}")),
))  # fmt: skip

STEPS = Row("Step latency", (
    _series("Step latency p50 (succeeded)", "s",
            (_quantile(0.5, "saga, step", "baton_step_duration_seconds", _SUCCEEDED), "{{step}}")),
    _series("Step latency p99 (succeeded)", "s",
            (_quantile(0.99, "saga, step", "baton_step_duration_seconds", _SUCCEEDED),
             "{{step}}")),
    _series("Step outcomes /s", "ops",
            ("sum by (step, outcome) (rate(baton_step_duration_seconds_count[5m]))",
             "{{step}} {{outcome}}")),
))  # fmt: skip

IN_FLIGHT = Row("In flight and stuck", (
    _stat("Sagas in flight", "max(baton_sagas_in_flight)", "in flight"),
    _stat("Stuck sagas", "max by (status) (baton_sagas_stuck)", "{{status}}", alarm_from=1),
    _series("Sagas by status", "short", ("max by (status) (baton_sagas)", "{{status}}")),
))  # fmt: skip

FAILURES = Row("Compensations and failures", (
    _series("Compensations started /s", "ops",
            ("sum by (saga) (rate(baton_compensations_started_total[5m]))", "{{saga}}")),
    _stat("Compensations failed (1h)",
          "sum by (saga, step) (increase(baton_compensations_failed_total[1h]))", "{{step}}",
          alarm_from=1),
    _stat("Failed sagas (1h)",
          'sum by (saga) (increase(baton_sagas_finished_total{outcome="failed"}[1h]))',
          "{{saga}}", alarm_from=1),
))  # fmt: skip

RETRIES = Row("Retries and timeouts", (
    _series("Retries /s", "ops",
            ("sum by (step, phase) (rate(baton_step_retries_total[5m]))", "{{step}} {{phase}}")),
    _series("Timeouts /s", "ops",
            ("sum by (step, phase) (rate(baton_step_timeouts_total[5m]))",
             "{{step}} {{phase}}")),
    _series("Replies ignored /s (stale, duplicate)", "ops",
            ("sum by (reason) (rate(baton_replies_ignored_total[5m]))", "{{reason}}")),
))  # fmt: skip

DEAD_LETTERS = Row("Dead letters and outbox", (
    _series("Dead-lettered /s", "ops",
            ("sum by (queue, reason) (rate(baton_dead_letters_total[5m]))",
             "{{queue}} {{reason}}"),
            ('sum by (participant) '
             '(rate(baton_participant_messages_total{outcome="dead_lettered"}[5m]))',
             "{{participant}}")),
    _series("Dead-letter queue depths (RabbitMQ)", "short",
            ('sum by (queue) (rabbitmq_queue_messages_ready{queue=~".*baton[.]dead[.].+"})',
             "{{queue}}")),
    _series("Outbox lag (oldest unsent entry)", "s", ("max(baton_outbox_lag_seconds)", "lag")),
))  # fmt: skip

QUEUES = Row("Queues (RabbitMQ)", (
    _series("Queue depth: ready", "short",
            (f"sum by (queue) (rabbitmq_queue_messages_ready{{{_WORK_QUEUES}}})", "{{queue}}")),
    _series("Queue depth: unacked", "short",
            (f"sum by (queue) (rabbitmq_queue_messages_unacked{{{_WORK_QUEUES}}})",
             "{{queue}}")),
    _series("Consumers per queue", "short",
            (f"sum by (queue) (rabbitmq_queue_consumers{{{_WORK_QUEUES}}})", "{{queue}}")),
))  # fmt: skip

PROCESSES = Row("Processes", (
    _stat("Participants up", 'up{job="participants"}', "{{participant}}", up_down=True),
    _series("Participant commands /s by outcome", "ops",
            ("sum by (participant, outcome) (rate(baton_participant_messages_total[1m]))",
             "{{participant}} {{outcome}}")),
    _series("Participant handling p99", "s",
            (_quantile(0.99, "participant", "baton_participant_handling_seconds"),
             "{{participant}}")),
    _stat("Orchestrator replicas up", 'up{job="orchestrator"}', "{{instance}}", up_down=True),
    _series("Orchestrator messages /s by outcome", "ops",
            ("sum by (queue, outcome) (rate(baton_messages_handled_total[1m]))",
             "{{queue}} {{outcome}}")),
    _series("Orchestrator handling p99", "s",
            (_quantile(0.99, "queue", "baton_message_handling_seconds"), "{{queue}}")),
))  # fmt: skip

# Today's dashboard, top to bottom; the SLO rows (from the definitions) come after.
BASE_ROWS: tuple[Row, ...] = (
    THROUGHPUT, STEPS, IN_FLIGHT, FAILURES, RETRIES, DEAD_LETTERS, QUEUES, PROCESSES,
)  # fmt: skip
