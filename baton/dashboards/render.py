"""The generated files, as text keyed by their path under the deploy folder.

One function renders both so ``baton dashboards`` and the test that keeps the checked-in
files current see exactly the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from baton.dashboards.grafana import GENERATED, dashboard_json
from baton.dashboards.panels import BASE_ROWS
from baton.dashboards.slo import slo_rules
from baton.dashboards.slo_panels import slo_rows
from orchestrator.core.definition import SagaDefinition

DASHBOARD = Path("grafana/dashboards/baton.json")
SLO_RULES = Path("prometheus/rules/slo.yml")
_RULES_HEADER = f"""\
# {GENERATED}: regenerate with `baton dashboards --out deploy/`.
# Multi-window multi-burn-rate alerts from each saga definition's `slos:` (the newest
# version of each saga); the policy is in baton/dashboards/slo.py and docs/operations.md,
# "Service-level objectives".
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the alert expressions) as literal blocks, readable in review."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def rules_yaml(definitions: Iterable[SagaDefinition]) -> str:
    """The SLO rule file; each expression on one line (or a literal block), never folded."""
    body = yaml.dump(slo_rules(definitions), Dumper=_Dumper, sort_keys=False, width=10_000)
    return _RULES_HEADER + body


def render(definitions: Iterable[SagaDefinition]) -> dict[Path, str]:
    """{path relative to the deploy folder: its text} for every generated file."""
    known = list(definitions)
    return {
        DASHBOARD: dashboard_json((*BASE_ROWS, *slo_rows(known))),
        SLO_RULES: rules_yaml(known),
    }


def stale(out: Path, files: dict[Path, str]) -> list[Path]:
    """The files under ``out`` that differ from their rendering (or are missing)."""
    return [
        path
        for path, text in files.items()
        if not (out / path).is_file() or (out / path).read_text() != text
    ]
