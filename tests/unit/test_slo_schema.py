"""The ``slos:`` of a saga definition: what loads, what is refused and why, what is kept out
of the registered body."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.dashboards.slo import POLICY
from contracts.compiler import load_contracts
from contracts.registry import ContractRegistry
from messaging.errors import DefinitionError
from orchestrator.core.definition import SagaDefinition, parse_definition
from orchestrator.core.slo import FASTEST_BURN, SAGA_DURATION_BUCKETS
from orchestrator.runtime import metrics
from orchestrator.runtime.definition_registry import registration

PAYMENT = Path(__file__).resolve().parents[2] / "sagas" / "payment"
BASE: dict[str, Any] = yaml.safe_load((PAYMENT / "definitions" / "payment.v1.yaml").read_text())
REGISTRY = ContractRegistry(load_contracts(PAYMENT / "contracts"))


def with_slos(*slos: dict[str, Any]) -> SagaDefinition:
    data = copy.deepcopy(BASE)
    data["slos"] = list(slos)
    return parse_definition(data, REGISTRY)


def test_the_payment_definition_declares_two_measurable_slos() -> None:
    definition = parse_definition(copy.deepcopy(BASE), REGISTRY)
    assert [slo.name for slo in definition.slos] == ["terminal_fast", "no_stranded_holds"]
    fast = definition.slos[0]
    assert fast.terminal_within_s in SAGA_DURATION_BUCKETS
    assert fast.error_budget == pytest.approx(0.001)


def test_slos_are_not_part_of_the_registered_body() -> None:
    """Changing an objective must not need a new definition version."""
    with_none = copy.deepcopy(BASE)
    del with_none["slos"]
    plain = registration(parse_definition(with_none, REGISTRY))
    declared = registration(parse_definition(copy.deepcopy(BASE), REGISTRY))
    assert "slos" not in declared.definition
    assert declared.digest == plain.digest


@pytest.mark.parametrize(
    ("objective", "says"),
    [
        (1, "above 0 and below 1"),
        (1.5, "above 0 and below 1"),
        (0, "above 0 and below 1"),
        (-0.5, "above 0 and below 1"),
        (float("nan"), "above 0 and below 1"),
        (0.9, "use an objective above 0.9306"),  # 14.4 x 10% > every saga failing
        ("high", "valid number"),
    ],
)
def test_a_bad_objective_is_refused_with_a_clear_definition_error(
    objective: object, says: str
) -> None:
    with pytest.raises(DefinitionError) as refused:
        with_slos({"name": "fast", "objective": objective, "terminal_within_s": 30})
    assert "slos.0.objective" in str(refused.value)
    assert says in str(refused.value)


def test_a_latency_bound_that_is_no_bucket_bound_is_refused() -> None:
    with pytest.raises(DefinitionError, match="terminal_within_s 20 is not a bucket bound"):
        with_slos({"name": "fast", "objective": 0.999, "terminal_within_s": 20})


@pytest.mark.parametrize(
    ("slos", "says"),
    [
        ([{"name": "a", "objective": 0.99, "outcomes": ["completed", "compensated", "failed"]}],
         "nothing can be bad"),
        ([{"name": "a", "objective": 0.99, "outcomes": []}], "distinct and not empty"),
        ([{"name": "a", "objective": 0.99, "outcomes": ["completed", "completed"]}],
         "distinct and not empty"),
        ([{"name": "a", "objective": 0.99, "outcomes": ["done"]}], "completed"),
        ([{"name": "a", "objective": 0.99}, {"name": "a", "objective": 0.999}],
         "slo names must be unique"),
        ([{"name": "Bad Name", "objective": 0.99}], "slos.0.name"),
        ([{"name": "a", "objective": 0.99, "window": "30d"}], "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_slos_that_measure_nothing_or_are_malformed_are_refused(
    slos: list[dict[str, Any]], says: str
) -> None:
    with pytest.raises(DefinitionError, match="slos") as refused:
        with_slos(*slos)
    assert says in str(refused.value)


def test_the_bucket_copy_matches_the_histogram_the_runtime_declares() -> None:
    assert SAGA_DURATION_BUCKETS == metrics._SAGA_BUCKETS


def test_the_alerting_policy_starts_at_the_fastest_burn_the_schema_checks() -> None:
    assert max(w.factor for w in POLICY) == FASTEST_BURN
    for window in POLICY:  # the short window is 1/12 of the long one (SRE workbook)
        assert _seconds(window.long) == 12 * _seconds(window.short)


def _seconds(window: str) -> int:
    return int(window[:-1]) * {"m": 60, "h": 3600, "d": 86400}[window[-1]]
