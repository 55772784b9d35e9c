"""Participant "review": the manual review of large orders, automated.

A query step (the saga sends it only when ``input.total.minor >= 50000``): it approves, as
reviewer ``auto-review``, unless the order id starts with a declined prefix (``blocked-``),
which is refused with ``review_declined``. The review command carries the order id and the
total, no customer, so the rule is on the order id. No state: a repeat answers the same.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from contracts.base import Reply
from contracts.money import Money
from examples.checkout.models import ORDER_REVIEWED, REVIEW_ORDER, checkout_contracts, reply
from messaging.errors import StepRejected

REVIEWER = "auto-review"
DECLINED_PREFIX = "blocked-"


class ReviewOrder(Protocol):
    """The fields of ``checkout.review_order.v1`` this participant reads."""

    @property
    def order_id(self) -> str: ...
    @property
    def total(self) -> Money: ...


class ReviewService:
    """Approves every order but those whose id starts with ``declined_prefix``."""

    def __init__(self, *, declined_prefix: str = DECLINED_PREFIX) -> None:
        self._declined_prefix = declined_prefix

    @handles(REVIEW_ORDER)
    async def review(self, cmd: ReviewOrder, ctx: MessageContext) -> Reply:
        if cmd.order_id.startswith(self._declined_prefix):
            raise StepRejected("review_declined")
        return reply(ORDER_REVIEWED, reviewer=REVIEWER)


def review_handlers(redis: Redis, namespace: str) -> Handlers:
    """The review participant; ``redis`` and ``namespace`` unused (it keeps no state)."""
    return Handlers.of(ReviewService(), contracts=checkout_contracts())
