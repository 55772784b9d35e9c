"""The hooks of ``sagas/payment/conformance.yaml``: what `baton conformance` needs seeded.

The sample commands name one account, one merchant and one token; ``seed`` makes them good
(once per run; existing ones are left alone). A capture is checked against the records, so
each fresh saga the kit makes gets, from ``capturable``, a hold and an attestation of its
own, issued through the ledger and PCI exactly as the saga's earlier steps would.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from baton_sdk import MessageContext
from contracts.money import Money
from participants.payments.contracts import CheckCompliance
from participants.payments.ledger import AccountSeed, Ledger, MerchantSeed
from participants.payments.pci import COMPLIANT, PciService

ACCOUNT = "conformance-acct"
MERCHANT = "conformance-shop"
TOKEN = "tok_conformance01"
BALANCE_MINOR = 10**12  # room for every hold a run places: they are never captured back


async def seed(redis: Redis, namespace: str) -> None:
    """Open the sample account and merchant, and make the merchant PCI compliant."""
    await Ledger(redis, namespace).seed(
        [AccountSeed(account_id=ACCOUNT, balance_minor=BALANCE_MINOR, currency="EUR")],
        [MerchantSeed(merchant_id=MERCHANT, currency="EUR")],
    )
    await PciService(redis, namespace).set_merchant_status(MERCHANT, COMPLIANT)


def _context(saga_id: str, step: str) -> MessageContext:
    return MessageContext(
        saga_id=saga_id, saga="payment", step=step, phase="forward",
        effect_id=f"{saga_id}|conformance|{step}", compensates="", attempt=1,
        traceparent="", message_id=f"conformance-{step}",
    )  # fmt: skip


async def capturable(
    redis: Redis, namespace: str, saga_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """``body`` with a hold and an attestation issued for ``saga_id``: a capture that works."""
    amount = Money.model_validate(body["amount"])
    merchant = str(body["merchant_id"])
    ctx = _context(saga_id, "authorize_payment")
    hold_id = await Ledger(redis, namespace).authorize(ctx.effect_id, saga_id, ACCOUNT, amount)
    approved = await PciService(redis, namespace).check(
        CheckCompliance(card_token=TOKEN, merchant_id=merchant),
        _context(saga_id, "check_compliance"),
    )
    return {**body, "hold_id": hold_id, "attestation_id": approved.attestation_id}
