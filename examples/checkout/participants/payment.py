"""Participant "wallet": a wallet per customer; authorize holds, void releases, capture takes.

Its own small ledger (the payment saga's ``participants.payments.ledger`` captures against a
PCI attestation and a merchant this saga does not have). Per customer: ``balance``
(available), ``held`` and ``captured``; the shop's ``revenue`` per currency. Every move is
one script (``scripts``):

* authorize moves the total from balance to held, refused with ``insufficient_funds``
  (``unknown_account``, ``currency_mismatch``); the hold id derives from the effect id;
* void (the compensation) moves a hold's amount back, keyed on the forward effect id, so it
  works when the hold never landed (it then leaves a ``cancelled`` marker); run again under
  its own effect id, it answers as it first did;
* capture (the pivot) moves a held amount to captured and to the revenue, once per effect
  id, and only for a hold of the same saga, held, of the same amount and currency
  (``hold_not_capturable``).

Money is conserved: per currency, ``seeded = Σ balance + Σ held + Σ captured``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from baton_sdk.scripts import call_many
from contracts.base import Reply
from contracts.money import Money
from examples.checkout.keys import WalletKeys
from examples.checkout.models import (
    AUTHORIZE_PAYMENT,
    CAPTURE_PAYMENT,
    PAYMENT_AUTHORIZED,
    PAYMENT_CAPTURED,
    PAYMENT_VOIDED,
    VOID_PAYMENT,
    checkout_contracts,
    reply,
)
from examples.checkout.participants import scripts
from examples.checkout.participants.records import DEFAULT_TTL_S, derive_id, outcome, text


class AccountSeed(BaseModel):
    """A customer's wallet as seeded."""

    customer_id: str
    balance_minor: int = Field(ge=0)
    currency: str


class AuthorizePayment(Protocol):
    """The fields of ``checkout.authorize_payment.v1`` this participant reads."""

    @property
    def customer_id(self) -> str: ...
    @property
    def total(self) -> Money: ...


class CapturePayment(Protocol):
    """The fields of ``checkout.capture_payment.v1`` this participant reads."""

    @property
    def hold_id(self) -> str: ...
    @property
    def total(self) -> Money: ...


class Wallet:
    """The ledger operations, each one atomic script, idempotent by effect id."""

    def __init__(self, redis: Redis, namespace: str, *, ttl_s: int = DEFAULT_TTL_S) -> None:
        self._redis = redis
        self.keys = WalletKeys(namespace)
        self._ttl_s = ttl_s
        self._authorize = redis.register_script(scripts.AUTHORIZE)
        self._void = redis.register_script(scripts.VOID)
        self._capture = redis.register_script(scripts.CAPTURE)
        self._seed = redis.register_script(scripts.SEED_ACCOUNT)

    async def authorize(self, effect_id: str, saga_id: str, customer: str, total: Money) -> str:
        """Hold ``total`` on the customer's balance; the hold id (the same on repeats)."""
        k, hold_id = self.keys, derive_id("hold", effect_id)
        keys = [k.hold(hold_id), k.account(customer), k.index("holds")]
        args: list[str | int] = [
            hold_id, effect_id, saga_id, customer, total.minor, total.currency, self._ttl_s,
        ]  # fmt: skip
        outcome(await self._authorize(keys=keys, args=args))
        return hold_id

    async def void(self, forward_effect_id: str, saga_id: str, effect_id: str) -> bool:
        """Release the hold of ``forward_effect_id``; True when this void (``effect_id``) is
        the one that gave the money back."""
        hold_id = derive_id("hold", forward_effect_id)
        key = self.keys.hold(hold_id)
        while True:
            customer = await self._customer(key)
            account = self.keys.account(customer) if customer else key
            args: list[str | int] = [
                customer, hold_id, forward_effect_id, saga_id, self._ttl_s, effect_id,
            ]  # fmt: skip
            result = text(await self._void(keys=[key, account], args=args))
            if result != "retry":  # the hold landed between our read and the script
                return result == "released"

    async def capture(self, effect_id: str, saga_id: str, hold_id: str, total: Money) -> str:
        """Move a held total to captured and to the revenue; the capture id (same on repeats)."""
        k, capture_id = self.keys, derive_id("cap", effect_id)
        while True:
            customer = await self._customer(k.hold(hold_id))
            keys = [
                k.capture(capture_id), k.hold(hold_id),
                k.account(customer) if customer else k.hold(hold_id),
                k.index("captures"), k.revenue, k.captures_per_saga,
            ]  # fmt: skip
            args: list[str | int] = [
                capture_id, effect_id, saga_id, hold_id, total.minor, total.currency,
                self._ttl_s, customer,
            ]  # fmt: skip
            result = await self._capture(keys=keys, args=args)
            if text(result[0]) != "retry":
                outcome(result)
                return capture_id

    async def _customer(self, hold_key: str) -> str:
        return text(await self._redis.hget(hold_key, "customer_id") or "")

    async def seed(self, accounts: Iterable[AccountSeed]) -> None:
        """Open wallets (an existing one is left alone) and add their money to the totals."""
        k = self.keys
        calls: list[tuple[list[str], list[str | int]]] = [
            ([k.account(a.customer_id), k.index("accounts"), k.totals],
             [a.customer_id, a.balance_minor, a.currency])
            for a in accounts
        ]  # fmt: skip
        await call_many(self._redis, self._seed, calls)

    async def balance(self, customer: str) -> dict[str, int]:
        """The wallet's ``balance``, ``held`` and ``captured`` (empty if it does not exist)."""
        row = await self._redis.hgetall(self.keys.account(customer))
        fields = {text(f): text(v) for f, v in row.items()}
        return {f: int(fields[f]) for f in ("balance", "held", "captured") if f in fields}


class PaymentService:
    """Translate payment commands into wallet calls. No AMQP in here."""

    def __init__(self, wallet: Wallet) -> None:
        self._wallet = wallet

    @handles(AUTHORIZE_PAYMENT)
    async def authorize(self, cmd: AuthorizePayment, ctx: MessageContext) -> Reply:
        hold_id = await self._wallet.authorize(
            ctx.effect_id, ctx.saga_id, cmd.customer_id, cmd.total
        )
        return reply(PAYMENT_AUTHORIZED, hold_id=hold_id)

    @handles(VOID_PAYMENT)
    async def void(self, cmd: object, ctx: MessageContext) -> Reply:
        # Keyed on the forward effect: it must work when the hold never landed.
        released = await self._wallet.void(ctx.compensates, ctx.saga_id, ctx.effect_id)
        return reply(PAYMENT_VOIDED, released=released)

    @handles(CAPTURE_PAYMENT)
    async def capture(self, cmd: CapturePayment, ctx: MessageContext) -> Reply:
        capture_id = await self._wallet.capture(ctx.effect_id, ctx.saga_id, cmd.hold_id, cmd.total)
        return reply(PAYMENT_CAPTURED, capture_id=capture_id)


def payment_handlers(redis: Redis, namespace: str) -> Handlers:
    return Handlers.of(PaymentService(Wallet(redis, namespace)), contracts=checkout_contracts())
