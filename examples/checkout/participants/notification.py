"""Participant "notification": sends each order's confirmation, once.

The saga's retriable step (after the pivot: retried until it succeeds), so it never
refuses. The first confirmation of an order is the only one: a repeat of the effect, or
another effect for the same order, answers the message id already sent. The message id
derives from the effect id that sent it.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from contracts.base import Reply
from examples.checkout.keys import NotificationKeys
from examples.checkout.models import (
    CONFIRMATION_SENT,
    SEND_CONFIRMATION,
    checkout_contracts,
    reply,
)
from examples.checkout.participants import scripts
from examples.checkout.participants.records import derive_id, text


class SendConfirmation(Protocol):
    """The fields of ``checkout.send_confirmation.v1`` this participant reads."""

    @property
    def order_id(self) -> str: ...


class NotificationService:
    """Records one confirmation per order; the record is the message sent."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self.keys = NotificationKeys(namespace)
        self._confirm = redis.register_script(scripts.CONFIRM)

    @handles(SEND_CONFIRMATION)
    async def send(self, cmd: SendConfirmation, ctx: MessageContext) -> Reply:
        keys = [self.keys.confirmation(cmd.order_id), self.keys.confirmations]
        args = [derive_id("msg", ctx.effect_id), cmd.order_id, ctx.saga_id, ctx.effect_id]
        message_id = text(await self._confirm(keys=keys, args=args))
        return reply(CONFIRMATION_SENT, message_id=message_id)


def notification_handlers(redis: Redis, namespace: str) -> Handlers:
    return Handlers.of(NotificationService(redis, namespace), contracts=checkout_contracts())
