"""Participant "payment": places a hold on the customer's account; its compensation voids it."""

from __future__ import annotations

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from participants.payments.contracts import (
    AuthorizationVoided,
    AuthorizePayment,
    PaymentAuthorized,
    VoidAuthorization,
    payment_contracts,
)
from participants.payments.ledger import Ledger


class AuthorizationService:
    """Translate authorization commands into ledger calls. No AMQP in here."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @handles(AuthorizePayment)
    async def authorize(self, cmd: AuthorizePayment, ctx: MessageContext) -> PaymentAuthorized:
        hold_id = await self._ledger.authorize(
            ctx.effect_id, ctx.saga_id, cmd.account_id, cmd.amount
        )
        return PaymentAuthorized(hold_id=hold_id)

    @handles(VoidAuthorization)
    async def void(self, cmd: VoidAuthorization, ctx: MessageContext) -> AuthorizationVoided:
        # Keyed on the forward effect, not cmd.hold_id: it must work when the hold never landed.
        return AuthorizationVoided(released=await self._ledger.void(ctx.compensates))


def authorization_handlers(redis: Redis, namespace: str) -> Handlers:
    return Handlers.of(
        AuthorizationService(Ledger(redis, namespace)), contracts=payment_contracts()
    )
