"""Participant "transaction": captures the held money for the merchant. The saga's pivot.

It trusts its records, not the command: the hold must belong to the command's saga with the
command's amount and currency (``hold_not_capturable``), and PCI must have issued the
attestation for the same saga and merchant (``attestation_mismatch``), all checked in the
capture's own atomic script.
"""

from __future__ import annotations

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from participants.payments.contracts import (
    CaptureTransaction,
    TransactionCaptured,
    payment_contracts,
)
from participants.payments.ledger import Ledger
from participants.payments.pci import PciKeys


class TransactionService:
    """Translate capture commands into ledger calls. There is no compensation: it is the pivot."""

    def __init__(self, ledger: Ledger, pci: PciKeys) -> None:
        self._ledger = ledger
        self._pci = pci

    @handles(CaptureTransaction)
    async def capture(self, cmd: CaptureTransaction, ctx: MessageContext) -> TransactionCaptured:
        attestation = self._pci.attestation(cmd.attestation_id)  # checked by the script
        capture_id = await self._ledger.capture(
            ctx.effect_id, ctx.saga_id, cmd.hold_id, cmd.merchant_id, cmd.amount, attestation
        )
        return TransactionCaptured(capture_id=capture_id)


def transaction_handlers(redis: Redis, namespace: str) -> Handlers:
    service = TransactionService(Ledger(redis, namespace), PciKeys(namespace))
    return Handlers.of(service, contracts=payment_contracts())
