"""The checkout invariants judged on hand-made records: each rule can fail, alone."""

from __future__ import annotations

from typing import Any

import pytest

from examples.checkout.invariants import CheckoutState, audit, inferred_outcomes

PRICE, QTY = 2_500, 2


def world(**changes: Any) -> CheckoutState:
    """s1 completed (stock shipped, money captured, confirmed); s2 compensated (all undone)."""
    data: dict[str, Any] = {
        "stock": {"sku-1": {"available": 100 - QTY, "seeded": 100}},
        "reservations": {
            "e1": {"saga_id": "s1", "order_id": "o1", "sku": "sku-1", "quantity": QTY,
                   "status": "reserved"},
            "e2": {"saga_id": "s2", "order_id": "o2", "sku": "sku-1", "quantity": QTY,
                   "status": "released"},
        },
        "accounts": {
            "c1": {"balance": 10_000 - PRICE, "held": 0, "captured": PRICE, "currency": "EUR"},
            "c2": {"balance": 10_000, "held": 0, "captured": 0, "currency": "EUR"},
        },
        "holds": {
            "h1": {"hold_id": "h1", "saga_id": "s1", "customer_id": "c1", "amount": PRICE,
                   "currency": "EUR", "status": "captured"},
            "h2": {"hold_id": "h2", "saga_id": "s2", "customer_id": "c2", "amount": PRICE,
                   "currency": "EUR", "status": "voided"},
        },
        "captures": {
            "k1": {"capture_id": "k1", "saga_id": "s1", "hold_id": "h1", "amount": PRICE,
                   "currency": "EUR", "status": "captured"},
        },
        "revenue": {"EUR": PRICE},
        "totals": {"EUR": 20_000},
        "captures_per_saga": {"s1": 1},
        "confirmations": {"o1": {"message_id": "m1", "order_id": "o1", "saga_id": "s1"}},
        "shipments": {
            "x1": {"status": "created", "saga_id": "s1", "order_id": "o1"},
            "x2": {"status": "cancelled", "saga_id": "s2"},
        },
    }  # fmt: skip
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    return CheckoutState.model_validate(data)


OUTCOMES = {"s1": "completed", "s2": "compensated"}


def test_a_clean_world_is_ok_with_outcomes_given_and_inferred() -> None:
    assert inferred_outcomes(world()) == OUTCOMES
    assert audit(world(), OUTCOMES).ok
    assert audit(world()).ok


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"stock__sku-1__available": 100}, "stock_imbalance", {"sku-1": QTY}),
        ({"reservations__e3": {"saga_id": "s3", "sku": "sku-1", "quantity": QTY,
                               "status": "reserved"}}, "stock_imbalance", {"sku-1": QTY}),
        ({"accounts__c2__balance": 9_000}, "money_imbalance", {"EUR": -1_000}),
        ({"revenue": {"EUR": PRICE * 2}}, "revenue_imbalance", {"EUR": PRICE}),
        ({"accounts__c1__held": PRICE, "accounts__c1__balance": 10_000 - 2 * PRICE},
         "accounts_mismatched", 1),
        ({"captures_per_saga": {"s1": 2}}, "double_captures", ["s1"]),
        ({"confirmations": {}}, "completed_incomplete", {"s1": ["confirmation"]}),
        ({"shipments__x1__status": "cancelled"}, "completed_incomplete", {"s1": ["shipment"]}),
    ],
)  # fmt: skip
def test_each_rule_fails_alone(changes: dict[str, Any], field: str, expected: Any) -> None:
    report = audit(world(**changes), OUTCOMES)
    assert getattr(report, field) == expected
    assert not report.ok
    assert report.problems == [f"{field}: {expected}"]


def test_a_compensated_saga_that_kept_its_effects_is_named() -> None:
    kept = world(**{
        "reservations__e2__status": "reserved", "stock__sku-1__available": 100 - 2 * QTY,
        "holds__h2__status": "held", "accounts__c2__balance": 10_000 - PRICE,
        "accounts__c2__held": PRICE, "shipments__x2__status": "created",
        "confirmations__o2": {"message_id": "m2", "order_id": "o2", "saga_id": "s2"},
    })  # fmt: skip
    report = audit(kept, OUTCOMES)
    assert report.reservations_left == ["s2"]
    assert report.holds_left == ["s2"]
    assert report.shipments_left == ["s2"]
    assert report.compensated_but_confirmed == ["s2"]
    assert not report.stock_imbalance
    assert not report.money_imbalance
    assert not report.accounts_mismatched


def test_a_hold_of_a_saga_in_progress_is_not_left_but_one_of_an_unknown_saga_is() -> None:
    held = world(**{"holds__h2__status": "held", "accounts__c2__balance": 10_000 - PRICE,
                    "accounts__c2__held": PRICE})  # fmt: skip
    assert audit(held, {"s1": "completed", "s2": "running"}).ok
    assert audit(held, {"s1": "completed"}).holds_left == ["s2"]


def test_a_capture_makes_a_saga_completed_whatever_else_its_records_show() -> None:
    assert inferred_outcomes(world(holds__h1__status="voided"))["s1"] == "completed"
    assert inferred_outcomes(world(captures_per_saga={})) == {"s2": "compensated"}
