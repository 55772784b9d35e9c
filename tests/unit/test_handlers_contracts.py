"""A participant's contracts: what its Handlers decode commands and read stored outcomes with,
without any module-level list of messages."""

from __future__ import annotations

from baton_sdk import Handlers, MessageContext, handles
from contracts.base import Reply, StepFailed
from participants.payments.contracts import (
    AssessRisk,
    AuthorizePayment,
    PaymentAuthorized,
    RiskAssessed,
    VoidAuthorization,
    payment_contracts,
)


class Scorer:
    @handles(AssessRisk)
    async def assess(self, cmd: AssessRisk, ctx: MessageContext) -> RiskAssessed | StepFailed:
        return RiskAssessed(score=1)


class Vague:
    @handles(AuthorizePayment)
    async def authorize(self, cmd: AuthorizePayment, ctx: MessageContext) -> Reply:
        return PaymentAuthorized(hold_id="h-1")


def test_typed_handlers_know_their_commands_and_the_replies_they_declare() -> None:
    handlers = Handlers.of(Scorer())
    assert handlers.get(AssessRisk.KIND) is AssessRisk
    assert handlers.get(RiskAssessed.KIND) is RiskAssessed
    assert handlers.get(StepFailed.KIND) is StepFailed  # refusals and cancellations
    assert handlers.get(AuthorizePayment.KIND) is None  # not theirs, and no contracts given


def test_replies_not_declared_come_from_the_contracts_given() -> None:
    assert Handlers.of(Vague()).get(PaymentAuthorized.KIND) is None  # ``-> Reply`` names none
    handlers = Handlers.of(Vague(), contracts=payment_contracts())
    assert handlers.get(PaymentAuthorized.KIND) is PaymentAuthorized
    assert handlers.get(VoidAuthorization.KIND) is VoidAuthorization  # decoded, then no_handler
    assert handlers.get("payments.unheard_of.v1") is None  # unknown_type
