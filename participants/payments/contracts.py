"""The payment participants' typed view of the card payment saga's messages.

The contracts themselves are data: ``sagas/payment/contracts/payments.yaml``, compiled when
the package loads. These classes are what the Python participants (and tools such as
``baton start``) write code against; ``tests/unit/test_payment_contracts.py`` holds each one
equal to its compiled model (schema, SENSITIVE, PAN checks), so the two cannot drift.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, StringConstraints

from contracts.base import Command, Contract, Reply, Start
from contracts.money import Money
from contracts.pan import FreeText, refuse_pan_anywhere
from contracts.registry import ContractRegistry

AccountId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MerchantId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# A vault token such as "tok_4f9a...": an opaque handle, never a primary account number,
# so no run of 12-19 digits passing Luhn anywhere inside it (tok_4111111111111111).
CardToken = Annotated[
    str,
    StringConstraints(pattern=r"^tok_[A-Za-z0-9]{8,64}$"),
    AfterValidator(refuse_pan_anywhere),
]
# Ids the participants make up (``hold_<hex>``): signed by their issuer, and not scanned, so
# that no id the ledger derives can ever be refused for the digits a hash happens to hold.
IssuedId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class StartTransaction(Start):
    """An upstream system asks for one card payment."""

    KIND: ClassVar[str] = "payments.start_transaction.v1"
    SENSITIVE: ClassVar[frozenset[str]] = frozenset({"card_token", "account_id"})
    account_id: AccountId
    merchant_id: MerchantId
    amount: Money
    card_token: CardToken
    description: Annotated[FreeText, Field(max_length=200)] = ""


class AuthorizePayment(Command):
    """Place a hold for the amount on the customer's account."""

    KIND: ClassVar[str] = "payments.authorize_payment.v1"
    SENSITIVE: ClassVar[frozenset[str]] = frozenset({"account_id"})
    account_id: AccountId
    amount: Money


class PaymentAuthorized(Reply):
    KIND: ClassVar[str] = "payments.payment_authorized.v1"
    hold_id: IssuedId


class VoidAuthorization(Command):
    """Release the hold. Must succeed when the authorization never happened."""

    KIND: ClassVar[str] = "payments.void_authorization.v1"
    hold_id: IssuedId | None = None


class AuthorizationVoided(Reply):
    KIND: ClassVar[str] = "payments.authorization_voided.v1"
    released: bool


class AssessRisk(Command):
    """Score the transaction; the service refuses scores above its threshold."""

    KIND: ClassVar[str] = "payments.assess_risk.v1"
    SENSITIVE: ClassVar[frozenset[str]] = frozenset({"account_id"})
    account_id: AccountId
    merchant_id: MerchantId
    amount: Money


class RiskAssessed(Reply):
    KIND: ClassVar[str] = "payments.risk_assessed.v1"
    score: int = Field(ge=0, le=100)


class ReleaseRiskExposure(Command):
    """Take the amount back out of the customer's recent-spend window."""

    KIND: ClassVar[str] = "payments.release_risk_exposure.v1"


class RiskExposureReleased(Reply):
    KIND: ClassVar[str] = "payments.risk_exposure_released.v1"
    released: bool


class CheckCompliance(Command):
    """Check the card token and the merchant's PCI standing."""

    KIND: ClassVar[str] = "payments.check_compliance.v1"
    SENSITIVE: ClassVar[frozenset[str]] = frozenset({"card_token"})
    card_token: CardToken
    merchant_id: MerchantId


class ComplianceApproved(Reply):
    KIND: ClassVar[str] = "payments.compliance_approved.v1"
    attestation_id: IssuedId


class RevokeAttestation(Command):
    """Withdraw the compliance attestation issued for this saga."""

    KIND: ClassVar[str] = "payments.revoke_attestation.v1"


class AttestationRevoked(Reply):
    KIND: ClassVar[str] = "payments.attestation_revoked.v1"
    revoked: bool


class CaptureTransaction(Command):
    """Move the held money to the merchant. The pivot: never compensated."""

    KIND: ClassVar[str] = "payments.capture_transaction.v1"
    hold_id: IssuedId
    merchant_id: MerchantId
    amount: Money
    attestation_id: IssuedId


class TransactionCaptured(Reply):
    KIND: ClassVar[str] = "payments.transaction_captured.v1"
    capture_id: IssuedId


MODELS: tuple[type[Contract], ...] = (
    StartTransaction,
    AuthorizePayment,
    PaymentAuthorized,
    VoidAuthorization,
    AuthorizationVoided,
    AssessRisk,
    RiskAssessed,
    ReleaseRiskExposure,
    RiskExposureReleased,
    CheckCompliance,
    ComplianceApproved,
    RevokeAttestation,
    AttestationRevoked,
    CaptureTransaction,
    TransactionCaptured,
)


def payment_contracts() -> ContractRegistry:
    """Every payment message as these classes: what the participants decode with, so a
    command meant for another of them is refused as ``no_handler``, not ``unknown_type``."""
    return ContractRegistry(MODELS)
