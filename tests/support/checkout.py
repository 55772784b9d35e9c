"""The checkout saga's participants running in the test's process, on the real broker and Redis.

The five Python participants are the package's own factories, each in the SDK's process
(``baton_sdk.run.run_worker``). The sixth, shipping, is Node.js in the package; here a
Python stand-in writes the shipment hash the checkout README agrees on, so the package's
invariants read it as they read the Node participant's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from baton_sdk.run import HandlersFactory, run_worker
from contracts.base import Reply
from examples.checkout.keys import ShipmentKeys
from examples.checkout.models import (
    CANCEL_SHIPMENT,
    CREATE_SHIPMENT,
    SHIPMENT_CANCELLED,
    SHIPMENT_CREATED,
    checkout_contracts,
    reply,
)
from examples.checkout.participants import PARTICIPANTS
from messaging.errors import StepRejected
from messaging.settings import Settings
from messaging.trust.signing import KeySet

CHECKOUT_PARTICIPANTS = ("inventory", "fraud", "review", "wallet", "shipping", "notification")


class ShippingStandIn:
    """Books and cancels shipments as ``node/shipping`` does (README "Redis key layout")."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._keys = ShipmentKeys(namespace)

    @handles(CREATE_SHIPMENT)
    async def create(self, cmd: object, ctx: MessageContext) -> Reply:
        key = self._keys.shipment(ctx.effect_id)
        if await self._redis.hget(key, "status") == b"cancelled":
            raise StepRejected("cancelled")
        shipment_id = f"shp_{ctx.effect_id[:24]}"
        await self._redis.hset(key, mapping={
            "status": "created", "shipment_id": shipment_id, "effect_id": ctx.effect_id,
            "saga_id": ctx.saga_id, "order_id": str(getattr(cmd, "order_id", "")),
        })  # fmt: skip
        return reply(SHIPMENT_CREATED, shipment_id=shipment_id)

    @handles(CANCEL_SHIPMENT)
    async def cancel(self, cmd: object, ctx: MessageContext) -> Reply:
        key = self._keys.shipment(ctx.compensates)
        before = await self._redis.hget(key, "status")
        await self._redis.hset(key, mapping={
            "status": "cancelled", "effect_id": ctx.compensates, "saga_id": ctx.saga_id,
            "cancelled_by": ctx.effect_id,
        })  # fmt: skip
        return reply(SHIPMENT_CANCELLED, cancelled=before == b"created")


def shipping_stand_in(redis: Redis, namespace: str) -> Handlers:
    return Handlers.of(ShippingStandIn(redis, namespace), contracts=checkout_contracts())


@asynccontextmanager
async def checkout_participants(settings: Settings, keys: KeySet) -> AsyncIterator[None]:
    """All six participants serving for the block, each signing with its key in ``keys``."""
    factories: dict[str, HandlersFactory] = {**PARTICIPANTS, "shipping": shipping_stand_in}
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_worker(name, factory, settings, stop, keyring=keys.keyring(name)))
        for name, factory in factories.items()
    ]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
