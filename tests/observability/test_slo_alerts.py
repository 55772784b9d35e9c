"""The generated SLO burn-rate alerts, evaluated by Prometheus's own rule engine.

``promtool test rules`` runs the checked-in deploy/prometheus/rules/slo.yml over recorded
input series (a day of sagas in seconds, which a live run could not give) and compares the
alerts firing at given times with the expected ones. The series are the payment saga's
``baton_saga_duration_seconds`` histogram as Baton exports it; every 2 minutes
``per_step`` sagas finish (2 minutes keeps the 5m window at two samples or more).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.dashboards import SLO_RULES
from baton.dashboards.slo import FAST_ALERT, SLOW_ALERT
from tests.observability.stack import ensure_prometheus

pytestmark = pytest.mark.timeout(120)

RULES = Path(__file__).resolve().parents[2] / "deploy" / SLO_RULES
STEP = "2m"
_HISTOGRAM = "baton_saga_duration_seconds"


def _rule(alert: str, slo: str) -> dict[str, Any]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return next(r for g in groups for r in g["rules"]
                if r.get("alert") == alert and r["labels"]["slo"] == slo)  # fmt: skip


def firing(alert: str, *slos: str) -> list[dict[str, Any]]:
    """The alerts expected from ``alert`` for each SLO: labels and annotations as generated."""
    return [
        {"exp_labels": _rule(alert, slo)["labels"],
         "exp_annotations": _rule(alert, slo)["annotations"]}
        for slo in slos
    ]  # fmt: skip


def payments(
    steps: int, *, fast: float, slow: float = 0, failed: float = 0
) -> list[dict[str, str]]:
    """Input series: per step, ``fast`` completed within 30 s, ``slow`` completed after it
    (over 60 s), ``failed`` ended failed (compensation out of attempts, after 120 s)."""
    completed = fast + slow

    def series(outcome: str, suffix: str, per_step: float, le: str | None = None) -> dict[str, str]:
        labels = f'saga="payment", outcome="{outcome}"' + (f', le="{le}"' if le else "")
        return {"series": f"{_HISTOGRAM}_{suffix}{{{labels}}}", "values": f"0+{per_step:g}x{steps}"}

    return [
        series("completed", "count", completed),
        series("completed", "bucket", fast, "30.0"),
        series("completed", "bucket", completed, "+Inf"),
        series("compensated", "count", 0),
        series("compensated", "bucket", 0, "30.0"),
        series("failed", "count", failed),
        series("failed", "bucket", 0, "30.0"),
        series("failed", "bucket", failed, "+Inf"),
    ]


def checks(at: str, expected: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"eval_time": at, "alertname": alert, "exp_alerts": alerts}
            for alert, alerts in expected.items()]  # fmt: skip


QUIET: dict[str, list[dict[str, Any]]] = {FAST_ALERT: [], SLOW_ALERT: []}
# One hour of trouble: 10% of payments slower than 30 s and 1% failed. Both SLOs page.
TROUBLE = {
    "interval": STEP,
    "input_series": payments(40, fast=90, slow=10, failed=1),
    "alert_rule_test": checks("1h", {
        FAST_ALERT: firing(FAST_ALERT, "terminal_fast", "no_stranded_holds"),
        SLOW_ALERT: firing(SLOW_ALERT, "terminal_fast", "no_stranded_holds"),
    }),
}  # fmt: skip
# Healthy for six hours: 0.05% slow (half the 0.1% budget), none failed. Nothing fires.
HEALTHY = {
    "interval": STEP,
    "input_series": payments(190, fast=1999, slow=1),
    "alert_rule_test": [*checks("10m", QUIET), *checks("1h", QUIET), *checks("6h", QUIET)],
}
# No payments at all: no ratio (0/0), no alert, rather than a page for an idle system.
IDLE = {
    "interval": STEP,
    "input_series": payments(40, fast=0),
    "alert_rule_test": checks("1h", QUIET),
}
# A slow burn: 0.4% slow, four times the budget. Too slow to page (14.4x over 1h, 6x over
# 6h), fast enough to ticket (3x over 1d and 2h; a window longer than the recorded three
# hours sees those hours); the other SLO stays quiet.
SLOW_BURN = {
    "interval": STEP,
    "input_series": payments(100, fast=1992, slow=8),
    "alert_rule_test": checks(
        "3h", {FAST_ALERT: [], SLOW_ALERT: firing(SLOW_ALERT, "terminal_fast")}
    ),
}


def promtool_test(tmp_path: Path, *groups: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    ensure_prometheus()
    promtool = shutil.which("promtool")
    assert promtool is not None
    spec = {"rule_files": [str(RULES)], "evaluation_interval": STEP, "tests": list(groups)}
    (tmp_path / "slo_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "slo_test.yml")],
        capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip


def test_burn_rate_alerts_fire_on_trouble_and_stay_silent_when_healthy(tmp_path: Path) -> None:
    done = promtool_test(tmp_path, TROUBLE, HEALTHY, IDLE, SLOW_BURN)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_test_can_fail(tmp_path: Path) -> None:
    """Expecting silence during the trouble hour must fail: promtool really compares."""
    wrong = {**TROUBLE, "alert_rule_test": checks("1h", QUIET)}
    done = promtool_test(tmp_path, wrong)
    assert done.returncode != 0
    assert FAST_ALERT in done.stdout + done.stderr
