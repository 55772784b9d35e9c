"""The checkout saga's Python participants, by name: factories ``(redis, namespace) -> Handlers``.

The sixth participant, ``shipping``, is the Node.js one in ``examples/checkout/node``.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from baton_sdk import Handlers
from examples.checkout.participants.fraud import fraud_handlers
from examples.checkout.participants.inventory import inventory_handlers
from examples.checkout.participants.notification import notification_handlers
from examples.checkout.participants.payment import payment_handlers
from examples.checkout.participants.review import review_handlers

PARTICIPANTS: dict[str, Callable[[Redis, str], Handlers]] = {
    "inventory": inventory_handlers,
    "fraud": fraud_handlers,
    "review": review_handlers,
    "wallet": payment_handlers,
    "notification": notification_handlers,
}

__all__ = [
    "PARTICIPANTS",
    "fraud_handlers",
    "inventory_handlers",
    "notification_handlers",
    "payment_handlers",
    "review_handlers",
]
