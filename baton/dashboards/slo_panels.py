"""Dashboard rows for the saga SLOs: how each stands over 30 days and how fast it burns.

Raw PromQL, not the recording rules of ``slo.yml``: the panels then show data on any
Prometheus that scrapes Baton, whether or not it loaded the generated rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from baton.dashboards.panels import Chart, Row
from baton.dashboards.slo import burn_rate, error_ratio, good_rate, latest, total_rate
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.slo import ServiceLevelObjective

PERIOD = "30d"  # the SLO period the burn-rate policy assumes
BURN_WINDOWS = ("1h", "6h", "1d")  # the long windows of the alerting policy but the slowest


def _charts(saga: str, slo: ServiceLevelObjective) -> tuple[Chart, ...]:
    name = f"{saga} {slo.name}"
    sli = f"{good_rate(saga, slo, PERIOD)} / {total_rate(saga, PERIOD)}"
    budget_left = f"1 - ({error_ratio(saga, slo, PERIOD)}) / (1 - {slo.objective!r})"
    return (
        Chart(f"{name}: good ratio ({PERIOD}, objective {slo.objective:.2%})", "stat",
              "percentunit", ((sli, slo.name),), good_from=slo.objective,
              description=slo.description),
        Chart(f"{name}: error budget left ({PERIOD})", "stat", "percentunit",
              ((budget_left, slo.name),), good_from=0),
        Chart(f"{name}: burn rate (1 = on budget)", "timeseries", "short",
              tuple((burn_rate(saga, slo, w), w) for w in BURN_WINDOWS)),
    )  # fmt: skip


def slo_rows(definitions: Iterable[SagaDefinition]) -> tuple[Row, ...]:
    """One row per saga that declares SLOs (its newest version's), three panels per SLO."""
    return tuple(
        Row(f"Service-level objectives: {d.name}",
            tuple(chart for slo in d.slos for chart in _charts(d.name, slo)))
        for d in latest(definitions)
        if d.slos
    )  # fmt: skip
