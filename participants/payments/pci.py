"""Participant "pci": checks the card token and the merchant's PCI standing.

A token is refused (``invalid_card_token``) when it is on the revoked list or malformed:
not ``tok_`` plus 8-64 letters and digits, or a body of 12-19 digits only (a card number
pasted where a vault token belongs). A merchant whose PCI status is not ``compliant``
(unknown merchants included) is refused with ``merchant_not_compliant``. Approval issues an
attestation, idempotent by effect id; ``RevokeAttestation`` withdraws it, and when it runs
first the late check is refused. A refusal is recorded under the effect id as well, so one
effect id never gets both an attestation and a refusal, even when two deliveries race.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from baton_sdk import Handlers, MessageContext, handles
from messaging.errors import StepRejected
from messaging.text import as_text
from participants.payments import scripts
from participants.payments.contracts import (
    AttestationRevoked,
    CheckCompliance,
    ComplianceApproved,
    RevokeAttestation,
    payment_contracts,
)
from participants.payments.ledger import BOOKS_SLOT, derive_id

COMPLIANT = "compliant"
TOKEN_SHAPE = re.compile(r"tok_[A-Za-z0-9]{8,64}")
PAN_LIKE = re.compile(r"tok_[0-9]{12,19}")


def fingerprint(token: str) -> str:
    """What the revoked list stores: a token's hash, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    """Whether ``token`` looks like a vault token (and not like a card number)."""
    return bool(TOKEN_SHAPE.fullmatch(token)) and not PAN_LIKE.fullmatch(token)


def check_token(token: str, *, revoked: bool) -> None:
    """Refuse a malformed or revoked token."""
    if revoked or not well_formed(token):
        raise StepRejected("invalid_card_token")


def check_merchant(status: str | None) -> None:
    """Refuse a merchant that is not PCI compliant (or unknown)."""
    if status != COMPLIANT:
        raise StepRejected("merchant_not_compliant")


@dataclass(frozen=True, slots=True)
class PciKeys:
    namespace: str

    def merchant(self, merchant_id: str) -> str:
        return f"{self.namespace}pci:merchant:{merchant_id}"

    def attestation(self, attestation_id: str) -> str:
        """The record of one attestation, by its id: in the ledger's hash slot, so that the
        transaction service checks it atomically with the capture (Redis Cluster)."""
        return f"{self.namespace}pci:{BOOKS_SLOT}:attestation:{attestation_id}"

    def attestation_of(self, effect_id: str) -> str:
        """The record of the attestation a check with this effect id issues (or refused)."""
        return self.attestation(attestation_id(effect_id))

    @property
    def revoked_tokens(self) -> str:
        return f"{self.namespace}pci:revoked_tokens"


def attestation_id(effect_id: str) -> str:
    """The id of the attestation a check issues: derived from its effect id, so stable."""
    return derive_id("att", effect_id)


def _answer(result: list[Any]) -> str:
    """The attestation id of an ``{'ok', id}`` answer; ``{'err', reason}`` raises."""
    status, value = (as_text(v) or "" for v in result)
    if status == "err":
        raise StepRejected(value or "cancelled")
    return value


class PciService:
    """Checks tokens and merchants, and keeps the attestations it issued."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self.keys = PciKeys(namespace)
        self._issue = redis.register_script(scripts.ISSUE_ATTESTATION)
        self._refuse = redis.register_script(scripts.REFUSE_ATTESTATION)
        self._revoke = redis.register_script(scripts.REVOKE_ATTESTATION)

    @handles(CheckCompliance)
    async def check(self, cmd: CheckCompliance, ctx: MessageContext) -> ComplianceApproved:
        key = self.keys.attestation_of(ctx.effect_id)
        if await self._redis.exists(key):  # answered before, or revoked first
            return ComplianceApproved(attestation_id=await self._issue_once(key, ctx, cmd))
        try:
            await self._judge(cmd)
        except StepRejected as exc:  # recorded, unless a racing check answered first
            result = await self._refuse(keys=[key], args=[exc.reason])
        else:
            return ComplianceApproved(attestation_id=await self._issue_once(key, ctx, cmd))
        return ComplianceApproved(attestation_id=_answer(result))

    async def _judge(self, cmd: CheckCompliance) -> None:
        """Refuse a bad token or a non-compliant merchant."""
        token = fingerprint(cmd.card_token)
        revoked = await self._redis.sismember(self.keys.revoked_tokens, token)
        check_token(cmd.card_token, revoked=bool(revoked))
        check_merchant(as_text(await self._redis.get(self.keys.merchant(cmd.merchant_id))))

    async def _issue_once(self, key: str, ctx: MessageContext, cmd: CheckCompliance) -> str:
        args = [attestation_id(ctx.effect_id), ctx.saga_id, cmd.merchant_id]
        return _answer(await self._issue(keys=[key], args=args))

    @handles(RevokeAttestation)
    async def revoke(self, cmd: RevokeAttestation, ctx: MessageContext) -> AttestationRevoked:
        revoked = await self._revoke(keys=[self.keys.attestation_of(ctx.compensates)])
        return AttestationRevoked(revoked=bool(revoked))

    async def set_merchant_status(self, merchant: str, status: str) -> None:
        """Record a merchant's PCI status ("compliant", "expired", "suspended", ...)."""
        await self._redis.set(self.keys.merchant(merchant), status)

    async def revoke_token(self, token: str) -> None:
        """Put a card token on the revoked list."""
        await self._redis.sadd(self.keys.revoked_tokens, fingerprint(token))


def pci_handlers(redis: Redis, namespace: str) -> Handlers:
    return Handlers.of(PciService(redis, namespace), contracts=payment_contracts())
