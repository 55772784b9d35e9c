"""Definitions are data, checked on load: each rule of design.md §4 refuses a broken one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from messaging.errors import DefinitionError
from orchestrator.core.catalog import saga_id_for
from orchestrator.core.definition import SagaDefinition, load_definition
from tests.support.sagas import bundled, catalog, parse, payment_data, payment_registry


def payment() -> dict[str, Any]:
    return payment_data()


def parse_definition(data: dict[str, Any]) -> SagaDefinition:
    return parse(data)


def test_the_builtin_payment_saga_loads_with_its_pivot() -> None:
    (definition,) = bundled().definitions
    assert [s.name for s in definition.steps] == [
        "authorize_payment",
        "assess_risk",
        "check_compliance",
        "capture_transaction",
    ]
    assert definition.pivot_index == 3
    assert definition.participants == ("payment", "risk", "pci", "transaction")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: d["steps"][0].update(compensation=None), "needs a compensation"),
        (lambda d: d["steps"][1].update(kind="pivot"), "at most one pivot"),
        (
            lambda d: d["steps"][3]["action"].update(command="payments.nope.v1"),
            "not a known Command",
        ),
        (
            lambda d: d["steps"][3]["action"].update(reply="payments.assess_risk.v1"),
            "not a known Reply",
        ),
        (lambda d: d.update(trigger="payments.assess_risk.v1"), "not a known Start"),
        (lambda d: d["steps"][0]["action"]["payload"].pop("amount"), "lacks required field"),
        (lambda d: d["steps"][0]["action"]["payload"].update(amount="input.nope"), "no field"),
        (lambda d: d["steps"][0]["action"]["payload"].update(bogus="input.amount"), "has no field"),
        # A payload may only read outputs of steps that come before it.
        (
            lambda d: d["steps"][0]["action"]["payload"].update(
                account_id="steps.capture_transaction.capture_id"
            ),
            "no step 'capture_transaction' has replied",
        ),
        # (a compensatable step after the pivot is well formed, and unsafe: test_explore.py)
        (
            lambda d: d["steps"][3].update(compensation=d["steps"][0]["compensation"]),
            "only compensatable",
        ),
        (lambda d: d["steps"][1].update(name="authorize_payment"), "unique"),
    ],
)
def test_a_broken_definition_is_refused(breakage: Any, message: str) -> None:
    data = payment()
    breakage(data)
    with pytest.raises(DefinitionError, match=message):
        parse_definition(data)


def test_yaml_errors_are_definition_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(DefinitionError):
        load_definition(bad, payment_registry())
    with pytest.raises(DefinitionError):
        load_definition(tmp_path / "missing.yaml", payment_registry())


def test_catalog_starts_the_newest_version_and_keeps_older_ones() -> None:
    v1 = parse_definition(payment())
    v2 = parse_definition({**payment(), "version": 2})
    both = catalog(v1, v2)
    assert both.for_trigger(v1.trigger) is v2
    assert both.get("payment", 1) is v1, "running sagas finish on the version they started"
    with pytest.raises(DefinitionError, match="twice"):
        catalog(v1, v1)
    with pytest.raises(DefinitionError, match="starts both"):
        catalog(v1, parse_definition({**payment(), "name": "other"}))


def test_saga_ids_follow_the_idempotency_key() -> None:
    assert saga_id_for("payment", "k") == saga_id_for("payment", "k")
    assert saga_id_for("payment", "k") != saga_id_for("payment", "k2")
    assert saga_id_for("payment", "k") != saga_id_for("refund", "k")
