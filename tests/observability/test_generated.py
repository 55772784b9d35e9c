"""The generated dashboard and SLO rules: current with the code, and loadable by Prometheus.

``baton dashboards`` writes deploy/grafana/dashboards/baton.json and
deploy/prometheus/rules/slo.yml; these tests fail when either was edited by hand or the
code (panels, a definition's ``slos:``) changed without regenerating them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from baton.cli import main
from baton.dashboards import DASHBOARD, GENERATED, SLO_RULES, render
from baton.dashboards.panels import BASE_ROWS
from orchestrator.runtime.packages import default_package_paths, load_packages
from tests.observability.stack import ensure_prometheus

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _bundled() -> dict[Path, str]:
    return render(load_packages(default_package_paths()).definitions)


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    """The command, run into an empty folder, writes byte for byte the checked-in files."""
    done = CliRunner().invoke(main, ["dashboards", "--out", str(tmp_path)], env={
        "BATON_ORCHESTRATOR__PACKAGES": None, "BATON_ORCHESTRATOR__DEFINITIONS": None})  # fmt: skip
    assert done.exit_code == 0, done.output
    for path in (DASHBOARD, SLO_RULES):
        assert (tmp_path / path).read_bytes() == (DEPLOY / path).read_bytes(), (
            f"{path} is stale: run `baton dashboards --out deploy/`"
        )
    assert set(_bundled()) == {DASHBOARD, SLO_RULES}


def test_check_mode_names_a_hand_edited_file(tmp_path: Path) -> None:
    for path, text in _bundled().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    runner = CliRunner()
    assert runner.invoke(main, ["dashboards", "--check", "--out", str(tmp_path)]).exit_code == 0
    edited = tmp_path / DASHBOARD
    edited.write_text(edited.read_text().replace('"Stuck sagas"', '"Stuck"'))
    done = runner.invoke(main, ["dashboards", "--check", "--out", str(tmp_path)])
    assert done.exit_code == 1
    assert str(DASHBOARD) in done.output
    assert str(SLO_RULES) not in done.output


def test_the_files_say_they_are_generated_and_keep_every_panel() -> None:
    dashboard = json.loads((DEPLOY / DASHBOARD).read_text())
    assert GENERATED in dashboard["description"]
    assert (DEPLOY / SLO_RULES).read_text().startswith(f"# {GENERATED}")
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert ids == list(range(1, len(panels) + 1))
    queries = {t["expr"] for p in panels for t in p.get("targets", [])}
    assert {expr for row in BASE_ROWS for c in row.charts for expr, _ in c.targets} <= queries
    titles = {p["title"] for p in panels}
    assert "Service-level objectives: payment" in titles
    assert "payment terminal_fast: burn rate (1 = on budget)" in titles
    cells = [(x, y) for p in panels for x in range(p["gridPos"]["x"],
             p["gridPos"]["x"] + p["gridPos"]["w"]) for y in range(p["gridPos"]["y"],
             p["gridPos"]["y"] + p["gridPos"]["h"])]  # fmt: skip
    assert len(cells) == len(set(cells)), "panels overlap on the grid"


def test_the_slo_rules_pass_promtool() -> None:
    ensure_prometheus()
    promtool = shutil.which("promtool")
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / SLO_RULES)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert "SUCCESS: 18 rules found" in done.stdout.decode()
