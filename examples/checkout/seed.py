"""A deterministic checkout world, seeded so that every refusal really happens.

Which order fails where (``CheckoutWorld.order(n, fails_at=...)``):

==============  ==================  =====================  ==================================
``fails_at``    failing step        reason                 how
==============  ==================  =====================  ==================================
``inventory``   reserve_inventory   ``out_of_stock``       the sku ``sku-soldout`` has no stock
``fraud``       screen_fraud        ``fraud_suspected``    a total over 800000 minor units
``review``      manual_review       ``review_declined``    an order id ``blocked-…``, total
                                                           over the review threshold
``payment``     authorize_payment   ``insufficient_funds`` the customer ``cust-poor`` holds 1.00
==============  ==================  =====================  ==================================

Everything else succeeds while stock and balances last; ``order(n, review=True)`` makes an
order large enough (``REVIEW_MINOR``) to be reviewed, and approved. Seeding is idempotent: a
sku or wallet seeded before is left alone.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from contracts.base import Start
from examples.checkout.models import PLACE_ORDER, checkout_contracts
from examples.checkout.participants.inventory import InventoryService
from examples.checkout.participants.payment import AccountSeed, Wallet

FailAt = Literal["inventory", "fraud", "review", "payment"]

CURRENCY = "EUR"
ORDER_MINOR = 2_500  # 25.00: below the review threshold, scored low by fraud
REVIEW_MINOR = 60_000  # 600.00: reviewed (the saga's condition is >= 50000)
FRAUD_MINOR = 900_000  # 9,000.00: refused by fraud whoever the customer is
POOR_MINOR = 100
SOLD_OUT = "sku-soldout"
POOR = "cust-poor"
DECLINED_PREFIX = "blocked-"  # the review participant's declined order ids
ADDRESS = "1 Example Street, 12345 Springfield"

# What conformance.yaml's samples name; seeded by ``seed_for_conformance``.
CONFORMANCE_SKU = "sku-conformance"
CONFORMANCE_CUSTOMER = "cust-conformance"
CONFORMANCE_STOCK = 1_000_000
CONFORMANCE_BALANCE_MINOR = 10**12


class CheckoutWorld(BaseModel):
    """The ids ``seed`` created; see the module docstring for what fails where."""

    run_id: str
    currency: str
    skus: list[str]
    customers: list[str]
    stock: int
    balance_minor: int

    def order(
        self, n: int, *, fails_at: FailAt | None = None, review: bool = False
    ) -> dict[str, Any]:
        """The body of the n-th ``checkout.place_order.v1`` of this world."""
        order_id, customer = f"order-{self.run_id}-{n}", self.customers[n % len(self.customers)]
        sku, minor = self.skus[n % len(self.skus)], REVIEW_MINOR if review else ORDER_MINOR
        match fails_at:
            case "inventory":
                sku = SOLD_OUT
            case "fraud":
                minor = FRAUD_MINOR
            case "review":
                order_id, minor = f"{DECLINED_PREFIX}{order_id}", REVIEW_MINOR
            case "payment":
                customer = POOR
        return {
            "idempotency_key": f"checkout-{self.run_id}-{n}",
            "order_id": order_id,
            "customer_id": customer,
            "sku": sku,
            "quantity": 1,
            "total": {"minor": minor, "currency": self.currency},
            "address": ADDRESS,
        }

    def place_order(self, n: int, **options: Any) -> Start:
        """The n-th order as the compiled start contract (validated)."""
        model = checkout_contracts().require(PLACE_ORDER, Start)
        return model.model_validate(self.order(n, **options))


async def seed(
    redis: Redis,
    namespace: str,
    *,
    run_id: str = "demo",
    skus: int = 3,
    customers: int = 4,
    stock: int = 1_000,
    balance_minor: int = 10_000_000,
    currency: str = CURRENCY,
) -> CheckoutWorld:
    """Seed stock, wallets and the traps of the module docstring; describe them."""
    world = CheckoutWorld(
        run_id=run_id, currency=currency, stock=stock, balance_minor=balance_minor,
        skus=[f"sku-{i:03d}" for i in range(skus)],
        customers=[f"cust-{i:04d}" for i in range(customers)],
    )  # fmt: skip
    await InventoryService(redis, namespace).seed(
        [*((sku, stock) for sku in world.skus), (SOLD_OUT, 0)]
    )
    await Wallet(redis, namespace).seed(
        [AccountSeed(customer_id=c, balance_minor=balance_minor, currency=currency)
         for c in world.customers]
        + [AccountSeed(customer_id=POOR, balance_minor=POOR_MINOR, currency=currency)]
    )  # fmt: skip
    return world


async def seed_for_conformance(redis: Redis, namespace: str) -> None:
    """What the samples of ``conformance.yaml`` need: their sku in stock, their customer's
    wallet, both large enough for every command the conformance kit sends."""
    await InventoryService(redis, namespace).seed({CONFORMANCE_SKU: CONFORMANCE_STOCK})
    await Wallet(redis, namespace).seed([AccountSeed(
        customer_id=CONFORMANCE_CUSTOMER, balance_minor=CONFORMANCE_BALANCE_MINOR,
        currency=CURRENCY,
    )])  # fmt: skip
