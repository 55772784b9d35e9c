"""PromQL for the saga SLOs, and the multi-window multi-burn-rate alerts generated from them.

The alerting policy is the Google SRE workbook's (ch. 5, "Alerting on SLOs", the
multiwindow, multi-burn-rate table) for a 30-day SLO period: an alert fires when the error
ratio over a long window *and* over a short one (1/12 of it, so the alert stops soon after
the burn does) exceed ``factor`` times the error budget (1 - objective):

=========  ======  =======  =====  =====================================
severity   long    short    burn   budget spent when it fires
=========  ======  =======  =====  =====================================
critical   1h      5m       14.4   2% of 30 days' budget in one hour
critical   6h      30m      6      5% in six hours
warning    1d      2h       3      10% in a day
warning    3d      6h       1      10% in three days
=========  ======  =======  =====  =====================================

Critical ones page (``BatonSLOFastBurn``), warnings make a ticket (``BatonSLOSlowBurn``).
The error ratio of each window is a recording rule, ``baton_slo:error_ratio:rate<window>``,
labelled with the saga and the SLO.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.utils import floatToGoString

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.slo import FASTEST_BURN, ServiceLevelObjective

_HISTOGRAM = "baton_saga_duration_seconds"
FAST_ALERT, SLOW_ALERT = "BatonSLOFastBurn", "BatonSLOSlowBurn"


@dataclass(frozen=True)
class BurnWindow:
    """One row of the policy: alert when both windows burn faster than ``factor``."""

    alert: str
    severity: str
    long: str
    short: str
    factor: float


POLICY: tuple[BurnWindow, ...] = (
    BurnWindow(FAST_ALERT, "critical", "1h", "5m", FASTEST_BURN),
    BurnWindow(FAST_ALERT, "critical", "6h", "30m", 6),
    BurnWindow(SLOW_ALERT, "warning", "1d", "2h", 3),
    BurnWindow(SLOW_ALERT, "warning", "3d", "6h", 1),
)
WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def good_rate(saga: str, slo: ServiceLevelObjective, window: str) -> str:
    """Finished sagas per second that met the SLO: a good outcome, within the bound."""
    outcomes = "|".join(slo.outcomes)
    if slo.terminal_within_s is None:
        selector = f'saga="{saga}", outcome=~"{outcomes}"'
        return f"sum(rate({_HISTOGRAM}_count{{{selector}}}[{window}]))"
    # as prometheus_client writes the bound (30 -> "30.0"); the helper is untyped
    le: str = floatToGoString(slo.terminal_within_s)  # type: ignore[no-untyped-call]
    selector = f'saga="{saga}", outcome=~"{outcomes}", le="{le}"'
    return f"sum(rate({_HISTOGRAM}_bucket{{{selector}}}[{window}]))"


def total_rate(saga: str, window: str) -> str:
    """Finished sagas per second, every outcome."""
    return f'sum(rate({_HISTOGRAM}_count{{saga="{saga}"}}[{window}]))'


def error_ratio(saga: str, slo: ServiceLevelObjective, window: str) -> str:
    """The share of finished sagas that missed the SLO; no data (NaN) when none finished."""
    return f"1 - ({good_rate(saga, slo, window)} / {total_rate(saga, window)})"


def burn_rate(saga: str, slo: ServiceLevelObjective, window: str) -> str:
    """How many times faster than the objective allows the error budget is being spent."""
    return f"({error_ratio(saga, slo, window)}) / (1 - {slo.objective!r})"


def _recorded(saga: str, slo: ServiceLevelObjective, window: str) -> str:
    return f'baton_slo:error_ratio:rate{window}{{saga="{saga}", slo="{slo.name}"}}'


def _alert_expr(saga: str, slo: ServiceLevelObjective, alert: str) -> str:
    clauses = [
        f"({_recorded(saga, slo, w.long)} > {w.factor:g} * (1 - {slo.objective!r})"
        f" and {_recorded(saga, slo, w.short)} > {w.factor:g} * (1 - {slo.objective!r}))"
        for w in POLICY
        if w.alert == alert
    ]
    return "\nor ".join(clauses)


def _rules(saga: str, slo: ServiceLevelObjective) -> list[dict[str, Any]]:
    labels = {"saga": saga, "slo": slo.name}
    rules: list[dict[str, Any]] = [
        {"record": f"baton_slo:error_ratio:rate{w}", "expr": error_ratio(saga, slo, w),
         "labels": dict(labels)}
        for w in WINDOWS
    ]  # fmt: skip
    what = slo.description or slo.name
    for alert, severity, speed in (
        (FAST_ALERT, "critical", "fast"),
        (SLOW_ALERT, "warning", "slow"),
    ):
        rules.append({
            "alert": alert,
            "expr": _alert_expr(saga, slo, alert),
            "labels": {"severity": severity, **labels},
            "annotations": {
                "summary": f"{saga} SLO {slo.name} ({slo.objective:.2%}) burning its error "
                           f"budget {speed}",
                "description": f"{what} The error budget of {saga}/{slo.name} is being spent "
                               "faster than 30 days allow: see docs/operations.md, "
                               '"Service-level objectives".',
            },
        })  # fmt: skip
    return rules


def latest(definitions: Iterable[SagaDefinition]) -> list[SagaDefinition]:
    """The highest version of each saga, by name: the metrics have no version label, so the
    SLOs of the newest version speak for the saga."""
    newest: dict[str, SagaDefinition] = {}
    for d in definitions:
        if d.name not in newest or d.version > newest[d.name].version:
            newest[d.name] = d
    return [newest[name] for name in sorted(newest)]


def slo_rules(definitions: Iterable[SagaDefinition]) -> dict[str, Any]:
    """A Prometheus rule file: one group per saga with SLOs, recording rules then alerts."""
    groups = [
        {"name": f"baton-slo-{d.name}",
         "rules": [rule for slo in d.slos for rule in _rules(d.name, slo)]}
        for d in latest(definitions)
        if d.slos
    ]  # fmt: skip
    return {"groups": groups}
