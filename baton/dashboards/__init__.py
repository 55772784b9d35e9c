"""Dashboards and SLO alerts as code: the Grafana dashboard and the Prometheus SLO rules,
generated from Baton's panels and each saga definition's ``slos:``."""

from baton.dashboards.grafana import GENERATED, build_dashboard, dashboard_json
from baton.dashboards.render import DASHBOARD, SLO_RULES, render, stale
from baton.dashboards.slo import POLICY, slo_rules

__all__ = [
    "DASHBOARD",
    "GENERATED",
    "POLICY",
    "SLO_RULES",
    "build_dashboard",
    "dashboard_json",
    "render",
    "slo_rules",
    "stale",
]
