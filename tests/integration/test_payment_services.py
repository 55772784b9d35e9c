"""The four services' handlers called directly against real Redis, and the demo world's traps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from baton_sdk import MessageContext
from contracts.envelope import Phase
from contracts.money import Money
from messaging.errors import StepRejected
from participants.payments import DemoWorld, FailAt, seed_demo_world
from participants.payments.authorization import AuthorizationService
from participants.payments.contracts import (
    AssessRisk,
    AuthorizePayment,
    CaptureTransaction,
    CheckCompliance,
    ReleaseRiskExposure,
    RevokeAttestation,
)
from participants.payments.ledger import Ledger
from participants.payments.pci import COMPLIANT, PciKeys, PciService
from participants.payments.risk import RiskService
from participants.payments.transaction import TransactionService

pytestmark = pytest.mark.integration


def ctx(saga_id: str, step: str, phase: Phase = "forward") -> MessageContext:
    return MessageContext(
        saga_id=saga_id, saga="payment", step=step, phase=phase,
        effect_id=f"{saga_id}:{step}:{phase}", attempt=1, traceparent="", message_id="m",
        compensates=f"{saga_id}:{step}:forward" if phase == "compensate" else "",
    )  # fmt: skip


def eur(minor: int) -> Money:
    return Money(minor=minor, currency="EUR")


@pytest.fixture
def risk(redis_client: aioredis.Redis, namespace: str) -> RiskService:
    return RiskService(redis_client, namespace, clock=lambda: 1_000_000.0)


@pytest.fixture
def pci(redis_client: aioredis.Redis, namespace: str) -> PciService:
    return PciService(redis_client, namespace)


async def test_risk_is_idempotent_and_release_gives_exposure_back(risk: RiskService) -> None:
    cmd = AssessRisk(account_id="alice", merchant_id="shop", amount=eur(150_000))
    first = await risk.assess(cmd, ctx("s1", "risk"))
    again = await risk.assess(cmd, ctx("s1", "risk"))
    assert first == again
    assert first.score == 50
    assert await risk.spent("alice", "EUR") == 150_000
    released = await risk.release(ReleaseRiskExposure(), ctx("s1", "risk", "compensate"))
    assert released.released is True
    assert (
        await risk.release(ReleaseRiskExposure(), ctx("s1", "risk", "compensate"))
    ).released is False
    assert await risk.spent("alice", "EUR") == 0


async def test_risk_refuses_high_exposure_and_blocked_accounts(risk: RiskService) -> None:
    await risk.assess(AssessRisk(account_id="alice", merchant_id="shop", amount=eur(300_000)),
                      ctx("s1", "risk"))  # fmt: skip
    big = AssessRisk(account_id="alice", merchant_id="shop", amount=eur(500_000))
    with pytest.raises(StepRejected, match="risk_too_high"):
        await risk.assess(big, ctx("s2", "risk"))
    assert await risk.spent("alice", "EUR") == 300_000  # a refusal adds nothing
    await risk.block("bob")
    with pytest.raises(StepRejected, match="risk_too_high"):
        await risk.assess(AssessRisk(account_id="bob", merchant_id="shop", amount=eur(1)),
                          ctx("s3", "risk"))  # fmt: skip


async def test_risk_release_first_refuses_the_late_assessment(risk: RiskService) -> None:
    released = await risk.release(ReleaseRiskExposure(), ctx("s1", "risk", "compensate"))
    assert released.released is False
    with pytest.raises(StepRejected, match="cancelled"):
        await risk.assess(AssessRisk(account_id="alice", merchant_id="shop", amount=eur(100)),
                          ctx("s1", "risk"))  # fmt: skip
    assert await risk.spent("alice", "EUR") == 0


async def test_pci_attests_once_and_revokes(pci: PciService) -> None:
    await pci.set_merchant_status("shop", COMPLIANT)
    cmd = CheckCompliance(card_token="tok_abcdefgh1", merchant_id="shop")
    first = await pci.check(cmd, ctx("s1", "pci"))
    assert first == await pci.check(cmd, ctx("s1", "pci"))
    assert first.attestation_id.startswith("att_")
    revoke = RevokeAttestation()
    assert (await pci.revoke(revoke, ctx("s1", "pci", "compensate"))).revoked is True
    assert (await pci.revoke(revoke, ctx("s1", "pci", "compensate"))).revoked is False


async def test_pci_refusals(pci: PciService) -> None:
    await pci.set_merchant_status("shop", COMPLIANT)
    await pci.set_merchant_status("shady", "expired")
    await pci.revoke_token("tok_stolen0001")
    cases = [("tok_stolen0001", "shop", "invalid_card_token"),
             ("tok_4111111111111111", "shop", "invalid_card_token"),
             ("tok_abcdefgh1", "shady", "merchant_not_compliant"),
             ("tok_abcdefgh1", "unknown", "merchant_not_compliant")]  # fmt: skip
    for n, (token, merchant, reason) in enumerate(cases):
        # model_construct: the contract refuses a card number at the edge already; the
        # participant's own check is the second line
        cmd = CheckCompliance.model_construct(card_token=token, merchant_id=merchant)
        with pytest.raises(StepRejected) as refused:
            await pci.check(cmd, ctx(f"s{n}", "pci"))
        assert refused.value.reason == reason


async def test_pci_revoke_first_refuses_the_late_check(pci: PciService) -> None:
    await pci.set_merchant_status("shop", COMPLIANT)
    assert (await pci.revoke(RevokeAttestation(), ctx("s1", "pci", "compensate"))).revoked is False
    with pytest.raises(StepRejected, match="cancelled"):
        await pci.check(CheckCompliance(card_token="tok_abcdefgh1", merchant_id="shop"),
                        ctx("s1", "pci"))  # fmt: skip


async def run_saga(
    redis: aioredis.Redis, namespace: str, world: DemoWorld, n: int, fails_at: FailAt | None
) -> str | None:
    """Drive one demo payment through the four handlers; the refusal reason, if any."""
    start = world.transaction(n, fails_at=fails_at)
    ledger, saga = Ledger(redis, namespace), f"saga-{n}"
    try:
        auth = await AuthorizationService(ledger).authorize(
            AuthorizePayment(account_id=start.account_id, amount=start.amount), ctx(saga, "auth")
        )
        await RiskService(redis, namespace).assess(
            AssessRisk(
                account_id=start.account_id, merchant_id=start.merchant_id, amount=start.amount
            ),
            ctx(saga, "risk"),
        )
        att = await PciService(redis, namespace).check(
            CheckCompliance(card_token=start.card_token, merchant_id=start.merchant_id),
            ctx(saga, "pci"),
        )
        await TransactionService(ledger, PciKeys(namespace)).capture(
            CaptureTransaction(
                hold_id=auth.hold_id,
                merchant_id=start.merchant_id,
                amount=start.amount,
                attestation_id=att.attestation_id,
            ),
            ctx(saga, "capture"),
        )
    except StepRejected as exc:
        return exc.reason
    return None  # fmt: skip


@pytest.mark.parametrize(
    ("fails_at", "reason"),
    [
        (None, None),
        ("authorize", "insufficient_funds"),
        ("risk", "risk_too_high"),
        ("pci", "invalid_card_token"),
        ("pci_merchant", "merchant_not_compliant"),
        ("capture", "merchant_closed"),
    ],
)
async def test_demo_world_fails_where_documented(
    redis_client: aioredis.Redis, namespace: str, fails_at: FailAt | None, reason: str | None
) -> None:
    world = await seed_demo_world(redis_client, namespace, accounts=3, balance_minor=100_000)
    assert await run_saga(redis_client, namespace, world, 1, fails_at) == reason


# -- one outcome per effect id: a refusal is recorded, and never overrides a success -----------


def assess(minor: int) -> AssessRisk:
    return AssessRisk(account_id="alice", merchant_id="shop", amount=eur(minor))


async def test_a_risk_refusal_stays_refused_for_its_effect_id(risk: RiskService) -> None:
    await risk.assess(assess(400_000), ctx("s1", "risk"))
    await risk.assess(assess(400_000), ctx("s2", "risk"))
    with pytest.raises(StepRejected, match="risk_too_high"):  # 12,000 spent in the hour
        await risk.assess(assess(400_000), ctx("s3", "risk"))
    await risk.release(ReleaseRiskExposure(), ctx("s1", "risk", "compensate"))
    with pytest.raises(StepRejected) as again:  # 8,000 would pass now, but s3 was refused
        await risk.assess(assess(400_000), ctx("s3", "risk"))
    assert again.value.reason == "risk_too_high"
    assert again.value.detail.startswith("score")
    undo = await risk.release(ReleaseRiskExposure(), ctx("s3", "risk", "compensate"))
    assert undo.released is False
    with pytest.raises(StepRejected, match="risk_too_high"):
        await risk.assess(assess(400_000), ctx("s3", "risk"))
    assert await risk.spent("alice", "EUR") == 400_000


class RacingRisk(RiskService):
    """Lets another delivery of the same effect commit between this one's read and verdict."""

    racer: Callable[[], Awaitable[object]] | None = None

    async def _spent(self, exposure_key: str, now: float) -> int:
        spent = await super()._spent(exposure_key, now)
        racer, self.racer = self.racer, None
        if racer is not None:
            await racer()
        return spent


async def test_a_risk_refusal_racing_a_success_of_its_effect_id_answers_the_success(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    risk = RacingRisk(redis_client, namespace, clock=lambda: 1_000_000.0)
    for saga in ("s1", "s2"):
        await risk.assess(assess(400_000), ctx(saga, "risk"))

    async def release_then_assess() -> None:
        await risk.release(ReleaseRiskExposure(), ctx("s1", "risk", "compensate"))
        await risk.assess(assess(400_000), ctx("s3", "risk"))  # 8,000 spent: passes

    risk.racer = release_then_assess
    answer = await risk.assess(assess(400_000), ctx("s3", "risk"))  # saw 12,000 spent
    assert answer.score == 70  # the stored success, not a second, contradicting outcome
    assert await risk.spent("alice", "EUR") == 800_000


async def test_a_pci_refusal_stays_refused_for_its_effect_id(pci: PciService) -> None:
    await pci.set_merchant_status("shop", "expired")
    cmd = CheckCompliance(card_token="tok_abcdefgh1", merchant_id="shop")
    with pytest.raises(StepRejected, match="merchant_not_compliant"):
        await pci.check(cmd, ctx("s1", "pci"))
    await pci.set_merchant_status("shop", COMPLIANT)
    with pytest.raises(StepRejected, match="merchant_not_compliant"):
        await pci.check(cmd, ctx("s1", "pci"))
    assert (await pci.revoke(RevokeAttestation(), ctx("s1", "pci", "compensate"))).revoked is False
    with pytest.raises(StepRejected, match="merchant_not_compliant"):
        await pci.check(cmd, ctx("s1", "pci"))
    assert (await pci.check(cmd, ctx("s2", "pci"))).attestation_id.startswith("att_")


class RacingPci(PciService):
    """Lets another delivery of the same effect issue between this one's checks and verdict."""

    racer: Callable[[], Awaitable[object]] | None = None

    async def _judge(self, cmd: CheckCompliance) -> None:
        try:
            await super()._judge(cmd)
        finally:
            racer, self.racer = self.racer, None
            if racer is not None:
                await racer()


async def test_a_pci_refusal_racing_a_success_of_its_effect_id_answers_the_success(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    pci = RacingPci(redis_client, namespace)
    await pci.set_merchant_status("shop", "expired")
    cmd = CheckCompliance(card_token="tok_abcdefgh1", merchant_id="shop")

    async def comply_then_check() -> None:
        await pci.set_merchant_status("shop", COMPLIANT)
        await pci.check(cmd, ctx("s1", "pci"))

    pci.racer = comply_then_check
    answer = await pci.check(cmd, ctx("s1", "pci"))  # saw the merchant expired
    assert answer.attestation_id.startswith("att_")
    assert answer == await pci.check(cmd, ctx("s1", "pci"))


async def test_a_capture_is_checked_against_the_records_not_the_command(
    redis_client: aioredis.Redis, namespace: str, pci: PciService
) -> None:
    """Even a command the orchestrator signed cannot capture another saga's hold, capture for
    another merchant than PCI attested, or use another saga's attestation."""
    world = await seed_demo_world(redis_client, namespace, accounts=2, balance_minor=100_000)
    ledger = Ledger(redis_client, namespace)
    capture = TransactionService(ledger, PciKeys(namespace)).capture
    shop, other = world.merchants[0], world.merchants[1]
    holds, attestations = {}, {}
    for saga in ("s1", "s2"):
        auth = await AuthorizationService(ledger).authorize(
            AuthorizePayment(account_id=world.accounts[0], amount=eur(1_000)), ctx(saga, "auth")
        )
        att = await pci.check(CheckCompliance(card_token=world.tokens[0], merchant_id=shop),
                              ctx(saga, "pci"))  # fmt: skip
        holds[saga], attestations[saga] = auth.hold_id, att.attestation_id

    def cmd(hold: str, merchant: str, att: str, minor: int = 1_000) -> CaptureTransaction:
        return CaptureTransaction(hold_id=hold, merchant_id=merchant, amount=eur(minor),
                                  attestation_id=att)  # fmt: skip

    refusals = [
        (cmd(holds["s1"], other, attestations["s1"]), "attestation_mismatch"),  # another merchant
        (cmd(holds["s1"], shop, attestations["s2"]), "attestation_mismatch"),  # another saga's
        (cmd(holds["s1"], shop, "att_made_up"), "attestation_mismatch"),
        (cmd(holds["s2"], shop, attestations["s1"]), "hold_not_capturable"),  # another saga's
        (cmd(holds["s1"], shop, attestations["s1"], 999), "hold_not_capturable"),
    ]
    for n, (command, reason) in enumerate(refusals):
        with pytest.raises(StepRejected) as refused:
            await capture(command, ctx("s1", f"capture-{n}"))
        assert refused.value.reason == reason, n
    await pci.revoke(RevokeAttestation(), ctx("s2", "pci", "compensate"))
    with pytest.raises(StepRejected, match="attestation_mismatch"):  # revoked
        await capture(cmd(holds["s2"], shop, attestations["s2"]), ctx("s2", "capture"))
    books = await ledger.snapshot()
    assert books.captures == {}
    assert books.merchants[other].balance == books.merchants[shop].balance == 0
    await capture(cmd(holds["s1"], shop, attestations["s1"]), ctx("s1", "capture"))
    assert (await ledger.snapshot()).merchants[shop].balance == 1_000
