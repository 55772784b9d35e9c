"""The checkout contracts, compiled from ``contracts/*.yaml`` once, and the kinds by name.

The participants declare their handlers by KIND (``@handles(RESERVE_INVENTORY)``) and build
their replies from the compiled models, so the YAML is the one definition of every message:
no hand-written class can drift from what the orchestrator validates.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from contracts.base import Reply
from contracts.compiler import load_contracts
from contracts.registry import ContractRegistry
from examples.checkout import PACKAGE_DIR

CONTRACTS_DIR = PACKAGE_DIR / "contracts"

PLACE_ORDER = "checkout.place_order.v1"
RESERVE_INVENTORY = "checkout.reserve_inventory.v1"
INVENTORY_RESERVED = "checkout.inventory_reserved.v1"
RELEASE_INVENTORY = "checkout.release_inventory.v1"
INVENTORY_RELEASED = "checkout.inventory_released.v1"
SCREEN_ORDER = "checkout.screen_order.v1"
ORDER_SCREENED = "checkout.order_screened.v1"
REVIEW_ORDER = "checkout.review_order.v1"
ORDER_REVIEWED = "checkout.order_reviewed.v1"
AUTHORIZE_PAYMENT = "checkout.authorize_payment.v1"
PAYMENT_AUTHORIZED = "checkout.payment_authorized.v1"
VOID_PAYMENT = "checkout.void_payment.v1"
PAYMENT_VOIDED = "checkout.payment_voided.v1"
CAPTURE_PAYMENT = "checkout.capture_payment.v1"
PAYMENT_CAPTURED = "checkout.payment_captured.v1"
CREATE_SHIPMENT = "checkout.create_shipment.v1"
SHIPMENT_CREATED = "checkout.shipment_created.v1"
CANCEL_SHIPMENT = "checkout.cancel_shipment.v1"
SHIPMENT_CANCELLED = "checkout.shipment_cancelled.v1"
SEND_CONFIRMATION = "checkout.send_confirmation.v1"
CONFIRMATION_SENT = "checkout.confirmation_sent.v1"


@cache
def checkout_contracts() -> ContractRegistry:
    """Every checkout contract (and Baton's own kinds), compiled on first use."""
    return ContractRegistry(load_contracts(CONTRACTS_DIR))


def reply(kind: str, **fields: Any) -> Reply:
    """A reply of the compiled model ``kind``, validated like one off the wire."""
    return checkout_contracts().require(kind, Reply).model_validate(fields)
