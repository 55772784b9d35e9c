"""Participant "fraud": scores an order; refuses it (``fraud_suspected``) above a threshold.

A query step: it reads nothing and writes nothing, so there is nothing to undo and running
it twice gives the same answer. The score is deterministic from the customer and the total::

    score = min(100, blake2b(customer_id) mod 30 + total.minor // 10000)

(one point per 100.00 of a two-decimal currency). Above ``threshold`` (80) the order is
refused, so every total over 800000 minor units is refused whoever the customer is, and
none under 510000 is.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from contracts.base import Reply
from contracts.money import Money
from examples.checkout.models import ORDER_SCREENED, SCREEN_ORDER, checkout_contracts, reply
from messaging.errors import StepRejected

THRESHOLD = 80
CUSTOMER_SPREAD = 30  # the customer part of the score: 0 .. 29
MINOR_PER_POINT = 10_000


class ScreenOrder(Protocol):
    """The fields of ``checkout.screen_order.v1`` this participant reads."""

    @property
    def customer_id(self) -> str: ...
    @property
    def total(self) -> Money: ...


def score(customer_id: str, total: Money) -> int:
    """The fraud score (0-100) of an order; see the module docstring."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
    by_customer = int.from_bytes(digest, "big") % CUSTOMER_SPREAD
    return min(100, by_customer + total.minor // MINOR_PER_POINT)


class FraudService:
    """Scores orders. No state: a repeat scores the same."""

    def __init__(self, *, threshold: int = THRESHOLD) -> None:
        self._threshold = threshold

    @handles(SCREEN_ORDER)
    async def screen(self, cmd: ScreenOrder, ctx: MessageContext) -> Reply:
        value = score(cmd.customer_id, cmd.total)
        if value > self._threshold:
            raise StepRejected("fraud_suspected", f"score {value} > {self._threshold}")
        return reply(ORDER_SCREENED, score=value)


def fraud_handlers(redis: Redis, namespace: str) -> Handlers:
    """The fraud participant; ``redis`` and ``namespace`` unused (it keeps no state)."""
    return Handlers.of(FraudService(), contracts=checkout_contracts())
