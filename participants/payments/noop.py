"""No-op payment participants: every command answered at once with its success reply.

``baton bench`` runs these instead of the real services so that it measures the messaging
and orchestration cost, not the ledger's. They run inside the real worker SDK, so the
inbox lookup, the tombstone check, storing the reply and the confirmed publish are all
paid exactly as a real participant pays them.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from baton_sdk import Handler, Handlers, MessageContext
from contracts.base import Command, Reply
from participants.payments.contracts import (
    AssessRisk,
    AttestationRevoked,
    AuthorizationVoided,
    AuthorizePayment,
    CaptureTransaction,
    CheckCompliance,
    ComplianceApproved,
    PaymentAuthorized,
    ReleaseRiskExposure,
    RevokeAttestation,
    RiskAssessed,
    RiskExposureReleased,
    TransactionCaptured,
    VoidAuthorization,
    payment_contracts,
)

# Per participant: (command, the success reply built from the command's context).
_ANSWERS: dict[str, tuple[tuple[type[Command], Callable[[MessageContext], Reply]], ...]] = {
    "payment": (
        (AuthorizePayment, lambda ctx: PaymentAuthorized(hold_id=f"hold_{ctx.effect_id[:16]}")),
        (VoidAuthorization, lambda ctx: AuthorizationVoided(released=True)),
    ),
    "risk": (
        (AssessRisk, lambda ctx: RiskAssessed(score=1)),
        (ReleaseRiskExposure, lambda ctx: RiskExposureReleased(released=True)),
    ),
    "pci": (
        (
            CheckCompliance,
            lambda ctx: ComplianceApproved(attestation_id=f"att_{ctx.effect_id[:16]}"),
        ),
        (RevokeAttestation, lambda ctx: AttestationRevoked(revoked=True)),
    ),
    "transaction": (
        (
            CaptureTransaction,
            lambda ctx: TransactionCaptured(capture_id=f"cap_{ctx.effect_id[:16]}"),
        ),
    ),
}


def noop_answers(
    name: str,
) -> tuple[tuple[type[Command], Callable[[MessageContext], Reply]], ...]:
    """``name``'s commands and their success replies: ``baton bench``'s bare participants
    (``baton/bench/bare.py``) answer with exactly these, without the SDK."""
    return _ANSWERS[name]


def _answering(build: Callable[[MessageContext], Reply]) -> Handler:
    async def handle(_: Command, ctx: MessageContext) -> Reply:
        return build(ctx)

    return handle


def noop_handlers(name: str) -> Callable[[Redis, str], Handlers]:
    """A handlers factory shaped like ``SERVICES[name]``, answering every command at once."""
    if name not in _ANSWERS:
        raise ValueError(f"unknown participant {name!r}; known: {', '.join(sorted(_ANSWERS))}")

    def factory(_redis: Redis, _namespace: str) -> Handlers:
        handlers = Handlers(payment_contracts())
        for command, build in _ANSWERS[name]:
            handlers.register(command, _answering(build))
        return handlers

    return factory


NOOP_SERVICES: dict[str, Callable[[Redis, str], Handlers]] = {
    name: noop_handlers(name) for name in _ANSWERS
}
