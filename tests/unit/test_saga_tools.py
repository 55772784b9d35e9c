"""The pieces behind "every tool works for every saga": which factory ``baton participant``
runs, how ``baton start`` builds and refuses a start, whose sagas each ``baton books`` check
sees, and the checkout demo's stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baton.demo_sagas import CheckoutDemo, Stream
from baton.invariants import PackageResult, own_outcomes
from baton.participants import ParticipantNotFound, locate
from baton.starting import StartInputError, build_start, minor_units, read_input
from examples.checkout.participants.inventory import inventory_handlers
from examples.checkout.seed import REVIEW_MINOR, CheckoutWorld
from orchestrator.runtime.packages import load_packages
from participants.payments.books import BooksReport
from participants.payments.risk import risk_handlers

ROOT = Path(__file__).resolve().parents[2]
PAYMENT, CHECKOUT = ROOT / "sagas" / "payment", ROOT / "examples" / "checkout"
ORDER = {"order_id": "o-1", "customer_id": "cust-1", "sku": "sku-1", "quantity": 1,
         "total": {"minor": 2500, "currency": "EUR"}, "address": "1 Example Street"}  # fmt: skip


def test_a_name_is_found_in_the_configured_packages_then_the_bundled_ones() -> None:
    assert locate("inventory", configured=[str(CHECKOUT)]).factory is inventory_handlers
    assert locate("inventory", package=CHECKOUT).package == CHECKOUT
    assert locate("risk", configured=[str(CHECKOUT)]).factory is risk_handlers  # bundled
    with pytest.raises(ParticipantNotFound, match="known: payment, pci, risk, transaction"):
        locate("inventory")  # the checkout package is not configured
    with pytest.raises(ParticipantNotFound, match=f"package {CHECKOUT} lists it"):
        locate("risk", package=CHECKOUT)


@pytest.mark.parametrize(
    ("app", "says"),
    [("nope_module:f", "cannot import nope_module"), ("a b", "not a module:factory"),
     ("participants.payments.risk:nothing", "has no nothing"),
     ("orchestrator.runtime.packages:MANIFEST", "not callable")],
)  # fmt: skip
def test_a_bad_app_reference_is_refused_in_one_line(app: str, says: str) -> None:
    with pytest.raises(ParticipantNotFound, match=says) as refused:
        locate("x", app=app)
    assert "\n" not in str(refused.value)


def test_app_wins_and_noop_is_the_payment_stand_in() -> None:
    found = locate("inventory", app="participants.payments.risk:risk_handlers")
    assert found.factory is risk_handlers
    assert found.package is None
    assert locate("pci", noop=True).reference == "participants.payments.noop:pci"
    with pytest.raises(ParticipantNotFound, match="--noop"):
        locate("inventory", noop=True)


def test_input_is_inline_json_or_a_file(tmp_path: Path) -> None:
    file = tmp_path / "order.json"
    file.write_text(json.dumps(ORDER))
    assert read_input(json.dumps(ORDER)) == read_input(str(file)) == ORDER
    for bad, says in [("[1]", "must be a JSON object"), ("{x", "not JSON"),
                      (str(tmp_path / "missing.json"), "neither")]:  # fmt: skip
        with pytest.raises(StartInputError, match=says):
            read_input(bad)


def test_a_start_is_checked_against_the_newest_trigger_and_never_echoes_a_value() -> None:
    catalog = load_packages([PAYMENT, CHECKOUT]).catalog
    start = build_start(catalog, "checkout", ORDER, "k-1")
    assert start.KIND == "checkout.place_order.v1"
    assert start.idempotency_key == "k-1"
    assert build_start(catalog, "checkout", {**ORDER, "idempotency_key": "own"}, None
                       ).idempotency_key == "own"  # fmt: skip
    cases = [({**ORDER, "total": {"minor": 1, "currency": "QQQ"}}, "total.currency: ", "QQQ"),
             ({**ORDER, "address": "pay 4111 1111 1111 1111"}, "address: ", "4111"),
             ({**ORDER, "customer_id": "bad id!"}, "customer_id: ", "bad id!")]  # fmt: skip
    for data, field, value in cases:
        with pytest.raises(StartInputError, match=field) as refused:
            build_start(catalog, "checkout", data, None)
        assert value not in str(refused.value)
    with pytest.raises(StartInputError, match="no saga 'shipping' is loaded"):
        build_start(catalog, "shipping", {}, None)


def test_payment_amounts_in_major_units() -> None:
    assert minor_units("12.50", "EUR") == 1250
    assert minor_units("7", "JPY") == 7
    for amount, currency, says in [("1.234", "EUR", "more decimals"), ("x", "EUR", "decimal"),
                                   ("1", "QQQ", "currency")]:  # fmt: skip
        with pytest.raises(StartInputError, match=says):
            minor_units(amount, currency)


def test_each_package_sees_only_its_own_sagas() -> None:
    packages = load_packages([PAYMENT, CHECKOUT])
    by_saga = {"payment": {"p1": "completed"}, "checkout": {"c1": "completed", "c2": "running"}}
    assert own_outcomes(packages.package("payment"), by_saga) == {"p1": "completed"}
    assert own_outcomes(packages.package("checkout"), by_saga) == by_saga["checkout"]


def test_a_report_without_its_own_problems_lists_what_is_wrong() -> None:
    report = BooksReport(balanced=False, imbalance={"EUR": 5}, holds_left=[], double_captures=[],
                         completed_not_captured=["s1"], compensated_but_captured=[])  # fmt: skip
    result = PackageResult("payment", report)
    assert result.ok is False
    assert result.problems() == ["balanced: False", "imbalance: {'EUR': 5}",
                                 "completed_not_captured: ['s1']"]  # fmt: skip
    assert PackageResult("quiet", None).ok is True


def test_the_checkout_stream_fails_at_each_point_and_reviews_some_orders() -> None:
    demo = CheckoutDemo()
    demo._world = CheckoutWorld(run_id="t", currency="EUR", skus=["sku-000"],
                                customers=["cust-0000"], stock=10, balance_minor=10)  # fmt: skip
    starts, failing = demo.starts(Stream(sagas=400, fail_rate=0.25))
    bodies = [s.model_dump(mode="json") for s in starts]
    assert len(bodies) == 400
    assert 60 < failing < 140
    assert {b["sku"] for b in bodies} >= {"sku-000", "sku-soldout"}
    assert any(b["order_id"].startswith("blocked-") for b in bodies)
    assert any(b["total"]["minor"] == REVIEW_MINOR and not b["order_id"].startswith("blocked-")
               for b in bodies)  # fmt: skip
    assert len({b["idempotency_key"] for b in bodies}) == 400
