"""Participant "transaction": captures the held money for the merchant. The saga's pivot."""

from __future__ import annotations

from redis.asyncio import Redis

from contracts.payments import CaptureTransaction, TransactionCaptured
from participants.payments.ledger import Ledger
from participants.sdk import Handlers, MessageContext, handles


class TransactionService:
    """Translate capture commands into ledger calls. There is no compensation: it is the pivot."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @handles(CaptureTransaction)
    async def capture(self, cmd: CaptureTransaction, ctx: MessageContext) -> TransactionCaptured:
        capture_id = await self._ledger.capture(
            ctx.effect_id, ctx.saga_id, cmd.hold_id, cmd.merchant_id, cmd.amount
        )
        return TransactionCaptured(capture_id=capture_id)


def transaction_handlers(redis: Redis, namespace: str) -> Handlers:
    return Handlers.of(TransactionService(Ledger(redis, namespace)))
