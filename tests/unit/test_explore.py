"""The money-safety proof: safe definitions pass, unsafe ones fail with a counter-example."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from contracts.compiler import load_contracts
from contracts.registry import ContractRegistry
from orchestrator.core.definition import SagaDefinition, parse_definition
from orchestrator.core.engine.explore import explore

ROOT = Path(__file__).resolve().parents[2]
PAYMENT = ROOT / "sagas" / "payment"
REGISTRY = ContractRegistry(load_contracts(PAYMENT / "contracts"))
BASE: dict[str, Any] = yaml.safe_load((PAYMENT / "definitions" / "payment.v1.yaml").read_text())


def _definition(change: Any) -> SagaDefinition:
    data = copy.deepcopy(BASE)
    change(data)
    return parse_definition(data, REGISTRY)


def _steps(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in data["steps"] if "name" in s}


def test_the_payment_saga_is_safe() -> None:
    proof = explore(_definition(lambda data: None))
    assert proof.safe, proof.violation
    assert proof.states > 100  # every outcome of four steps, not a trivial walk
    assert set(proof.terminals) == {"completed", "compensated", "failed"}


def test_a_parallel_group_with_conditions_is_safe() -> None:
    def change(data: dict[str, Any]) -> None:
        steps = _steps(data)
        group = {"parallel": {"name": "hold_and_attest", "steps": [
            steps["authorize_payment"], steps["check_compliance"]]}}  # fmt: skip
        steps["assess_risk"]["when"] = "input.amount.minor >= 1000"
        data["steps"] = [group, steps["assess_risk"], steps["capture_transaction"]]

    proof = explore(_definition(change))
    assert proof.safe, proof.violation
    assert proof.variants == 2  # the condition true and false


def test_a_retriable_step_before_any_pivot_is_unsafe() -> None:
    def change(data: dict[str, Any]) -> None:
        risk = _steps(data)["assess_risk"]
        risk["kind"] = "retriable"
        del risk["compensation"]

    violation = explore(_definition(change)).violation
    assert violation is not None
    assert violation.rule == "effect_without_compensation"
    assert "assess_risk" in violation.detail
    assert violation.path[-1].endswith("compensate attempt 1: succeeded")


def test_a_compensatable_step_after_the_pivot_is_unsafe() -> None:
    def change(data: dict[str, Any]) -> None:
        steps = _steps(data)
        data["steps"] = [steps["authorize_payment"], steps["check_compliance"],
                         steps["capture_transaction"], steps["assess_risk"]]  # fmt: skip

    violation = explore(_definition(change)).violation
    assert violation is not None
    assert violation.rule == "compensation_after_pivot"
    assert "capture_transaction forward attempt 1: succeeded" in violation.path
    assert violation.path[-1] == "assess_risk forward attempt 1: refused"


def test_a_branch_without_compensation_is_unsafe() -> None:
    def change(data: dict[str, Any]) -> None:
        steps = _steps(data)
        risk = steps["assess_risk"]
        risk["kind"] = "query"
        del risk["compensation"]
        authorize = steps["authorize_payment"]
        authorize["kind"] = "retriable"
        del authorize["compensation"]
        group = {"parallel": {"name": "hold_and_score", "steps": [authorize, risk]}}
        data["steps"] = [group, steps["check_compliance"], steps["capture_transaction"]]

    violation = explore(_definition(change)).violation
    assert violation is not None
    assert violation.rule == "effect_without_compensation"
    assert "authorize_payment" in violation.detail
    assert "counter" not in str(violation)  # the path is printed step by step
    assert str(violation).count("\n") == len(violation.path)
