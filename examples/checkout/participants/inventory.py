"""Participant "inventory": reserves stock for an order; its compensation puts it back.

A reservation takes ``quantity`` of the sku's available stock in one script, refused with
``out_of_stock`` when less is available (``unknown_sku`` for a sku never seeded). The release
is keyed on the forward effect id (``ctx.compensates``), not on anything in its empty body,
so it works when the reservation never landed: it then leaves a ``cancelled`` marker and a
late reservation of that effect is refused; run again under its own effect id (a crash
before its outcome was recorded), it answers as it first did. Stock is conserved: per sku,
``seeded = available + Σ quantity of reservations still "reserved"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from baton_sdk.scripts import call_many
from contracts.base import Reply
from examples.checkout.keys import InventoryKeys
from examples.checkout.models import (
    INVENTORY_RELEASED,
    INVENTORY_RESERVED,
    RELEASE_INVENTORY,
    RESERVE_INVENTORY,
    checkout_contracts,
    reply,
)
from examples.checkout.participants import scripts
from examples.checkout.participants.records import DEFAULT_TTL_S, derive_id, outcome, text


class ReserveInventory(Protocol):
    """The fields of ``checkout.reserve_inventory.v1`` this participant reads."""

    @property
    def sku(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def order_id(self) -> str: ...


class InventoryService:
    """Stock per sku and reservations per forward effect id, all in one Redis slot."""

    def __init__(self, redis: Redis, namespace: str, *, ttl_s: int = DEFAULT_TTL_S) -> None:
        self._redis = redis
        self.keys = InventoryKeys(namespace)
        self._ttl_s = ttl_s
        self._reserve = redis.register_script(scripts.RESERVE)
        self._release = redis.register_script(scripts.RELEASE)
        self._seed = redis.register_script(scripts.SEED_STOCK)

    @handles(RESERVE_INVENTORY)
    async def reserve(self, cmd: ReserveInventory, ctx: MessageContext) -> Reply:
        k, reservation_id = self.keys, derive_id("res", ctx.effect_id)
        keys = [k.reservation(ctx.effect_id), k.stock(cmd.sku), k.index("reservations")]
        args: list[str | int] = [
            reservation_id, ctx.effect_id, ctx.saga_id, cmd.order_id, cmd.sku, cmd.quantity,
            self._ttl_s,
        ]  # fmt: skip
        outcome(await self._reserve(keys=keys, args=args))
        return reply(INVENTORY_RESERVED, reservation_id=reservation_id)

    @handles(RELEASE_INVENTORY)
    async def release(self, cmd: object, ctx: MessageContext) -> Reply:
        return reply(INVENTORY_RELEASED, released=await self.release_effect(ctx))

    async def release_effect(self, ctx: MessageContext) -> bool:
        """Put back the stock of ``ctx.compensates``; True when this release (``ctx.effect_id``)
        is the one that gave the stock back."""
        key = self.keys.reservation(ctx.compensates)
        while True:
            sku = text(await self._redis.hget(key, "sku") or "")
            stock = self.keys.stock(sku) if sku else key
            args: list[str | int] = [sku, ctx.compensates, ctx.saga_id, self._ttl_s, ctx.effect_id]
            result = text(await self._release(keys=[key, stock], args=args))
            if result != "retry":  # the reservation landed between our read and the script
                return result == "released"

    async def seed(self, stock: Mapping[str, int] | Iterable[tuple[str, int]]) -> None:
        """Stock skus (sku -> quantity); an sku seeded before is left alone."""
        items = stock.items() if isinstance(stock, Mapping) else stock
        calls = [([self.keys.stock(sku), self.keys.index("skus")], [sku, quantity])
                 for sku, quantity in items]  # fmt: skip
        await call_many(self._redis, self._seed, calls)

    async def available(self, sku: str) -> int | None:
        """The sku's available stock, None if it was never seeded."""
        raw = await self._redis.hget(self.keys.stock(sku), "available")
        return None if raw is None else int(raw)


def inventory_handlers(redis: Redis, namespace: str) -> Handlers:
    return Handlers.of(InventoryService(redis, namespace), contracts=checkout_contracts())
