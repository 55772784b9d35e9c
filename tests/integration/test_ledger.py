"""The ledger against real Redis: every refusal, idempotency by effect id, and the books check."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from contracts.money import Money
from messaging.errors import StepRejected
from participants.payments.ledger import AccountSeed, Ledger, MerchantSeed, derive_id
from participants.payments.pci import PciKeys

pytestmark = pytest.mark.integration


def eur(minor: int) -> Money:
    return Money(minor=minor, currency="EUR")


def attestation(ledger: Ledger, saga: str = "s1", merchant: str = "shop") -> str:
    """The key of the PCI attestation the fixture issued for ``saga`` and ``merchant``."""
    return PciKeys(ledger.keys.namespace).attestation(f"att_{saga}_{merchant}")


@pytest.fixture
async def ledger(redis_client: aioredis.Redis, namespace: str) -> Ledger:
    books = Ledger(redis_client, namespace)
    await books.seed(
        [
            AccountSeed(account_id="alice", balance_minor=10_000, currency="EUR"),
            AccountSeed(account_id="bob", balance_minor=500, currency="EUR"),
            AccountSeed(account_id="yuki", balance_minor=90_000, currency="JPY"),
        ],
        [
            MerchantSeed(merchant_id="shop", currency="EUR"),
            MerchantSeed(merchant_id="closed", currency="EUR", open=False),
        ],
    )
    for saga in ("s1", "s2"):
        for merchant in ("shop", "closed", "ghost"):
            await redis_client.hset(
                attestation(books, saga, merchant),
                mapping={"status": "issued", "saga_id": saga, "merchant": merchant},
            )
    return books


async def test_authorize_moves_money_into_one_hold_per_effect(ledger: Ledger) -> None:
    hold_id = await ledger.authorize("s1:auth", "s1", "alice", eur(2_500))
    again = await ledger.authorize("s1:auth", "s1", "alice", eur(2_500))
    assert again == hold_id == derive_id("hold", "s1:auth")
    assert await ledger.balance("alice") == 7_500
    books = await ledger.snapshot()
    assert books.holds[hold_id].status == "held"
    assert books.holds[hold_id].amount == 2_500


@pytest.mark.parametrize(
    ("account", "amount", "reason"),
    [
        ("nobody", eur(100), "unknown_account"),
        ("yuki", eur(100), "currency_mismatch"),
        ("bob", eur(501), "insufficient_funds"),
    ],
)
async def test_authorize_refusals_change_nothing(
    ledger: Ledger, account: str, amount: Money, reason: str
) -> None:
    with pytest.raises(StepRejected) as refused:
        await ledger.authorize("s1:auth", "s1", account, amount)
    assert refused.value.reason == reason
    assert (await ledger.snapshot()).holds == {}
    assert (await ledger.check_books({})).balanced


async def test_void_releases_a_hold_once(ledger: Ledger) -> None:
    await ledger.authorize("s1:auth", "s1", "alice", eur(1_000))
    assert await ledger.void("s1:auth") is True
    assert await ledger.void("s1:auth") is False
    assert await ledger.balance("alice") == 10_000
    books = await ledger.snapshot()
    assert books.holds[derive_id("hold", "s1:auth")].status == "voided"


async def test_void_before_authorize_refuses_the_late_authorize(ledger: Ledger) -> None:
    assert await ledger.void("s1:auth") is False
    with pytest.raises(StepRejected) as refused:
        await ledger.authorize("s1:auth", "s1", "alice", eur(1_000))
    assert refused.value.reason == "cancelled"
    assert await ledger.balance("alice") == 10_000
    assert (await ledger.snapshot()).holds == {}


async def test_capture_moves_the_hold_to_the_merchant_once(ledger: Ledger) -> None:
    hold_id = await ledger.authorize("s1:auth", "s1", "alice", eur(1_000))
    first = await ledger.capture(
        "s1:capture", "s1", hold_id, "shop", eur(1_000), attestation(ledger, "s1", "shop")
    )
    second = await ledger.capture(
        "s1:capture", "s1", hold_id, "shop", eur(1_000), attestation(ledger, "s1", "shop")
    )
    assert first == second
    books = await ledger.snapshot()
    assert books.merchants["shop"].balance == 1_000
    assert books.holds[hold_id].status == "captured"
    assert books.captures_per_saga == {"s1": 1}
    assert (await ledger.check_books({"s1": "completed"})).ok


async def test_void_never_undoes_a_capture(ledger: Ledger) -> None:
    hold_id = await ledger.authorize("s1:auth", "s1", "alice", eur(1_000))
    await ledger.capture(
        "s1:capture", "s1", hold_id, "shop", eur(1_000), attestation(ledger, "s1", "shop")
    )
    assert await ledger.void("s1:auth") is False
    assert await ledger.balance("alice") == 9_000
    assert (await ledger.snapshot()).holds[hold_id].status == "captured"


@pytest.mark.parametrize(
    ("hold", "merchant", "amount", "reason"),
    [
        ("real", "shop", 999, "hold_not_capturable"),  # wrong amount
        ("unknown", "shop", 1_000, "hold_not_capturable"),
        ("voided", "shop", 1_000, "hold_not_capturable"),
        ("other_saga", "shop", 1_000, "hold_not_capturable"),
        ("real", "closed", 1_000, "merchant_closed"),
        ("real", "ghost", 1_000, "merchant_closed"),
    ],
)
async def test_capture_refusals_change_nothing(
    ledger: Ledger, hold: str, merchant: str, amount: int, reason: str
) -> None:
    hold_id = await ledger.authorize("s1:auth", "s1", "alice", eur(1_000))
    other = await ledger.authorize("s2:auth", "s2", "alice", eur(1_000))
    if hold == "voided":
        await ledger.void("s1:auth")
    target = {"real": hold_id, "voided": hold_id, "unknown": "hold_nope", "other_saga": other}
    with pytest.raises(StepRejected) as refused:
        await ledger.capture(
            "s1:capture", "s1", target[hold], merchant, eur(amount),
            attestation(ledger, "s1", merchant),
        )  # fmt: skip
    assert refused.value.reason == reason
    books = await ledger.snapshot()
    assert books.captures == {}
    assert books.holds[hold_id].status in ("held", "voided")
    assert books.holds[other].status == "held"


@pytest.mark.parametrize(
    ("saga", "merchant", "status"),
    [
        ("s2", "shop", "issued"),  # another saga's attestation
        ("s1", "closed", "issued"),  # issued for another merchant than the capture's
        ("s1", "shop", "revoked"),
        ("s1", "shop", None),  # never issued
    ],
)
async def test_capture_refuses_an_attestation_pci_did_not_issue_for_it(
    ledger: Ledger, redis_client: aioredis.Redis, saga: str, merchant: str, status: str | None
) -> None:
    hold_id = await ledger.authorize("s1:auth", "s1", "alice", eur(1_000))
    key = attestation(ledger, saga, merchant)
    if status is None:
        await redis_client.delete(key)
    else:
        await redis_client.hset(key, "status", status)
    with pytest.raises(StepRejected) as refused:
        await ledger.capture("s1:capture", "s1", hold_id, "shop", eur(1_000), key)
    assert refused.value.reason == "attestation_mismatch"
    books = await ledger.snapshot()
    assert books.captures == {}
    assert books.merchants["shop"].balance == 0
    assert books.holds[hold_id].status == "held"


async def _two_sagas(ledger: Ledger) -> dict[str, str]:
    """A completed saga s1 and a compensated saga s2."""
    hold = await ledger.authorize("s1:auth", "s1", "alice", eur(1_000))
    await ledger.capture(
        "s1:capture", "s1", hold, "shop", eur(1_000), attestation(ledger, "s1", "shop")
    )
    await ledger.authorize("s2:auth", "s2", "alice", eur(2_000))
    await ledger.void("s2:auth")
    return {"s1": "completed", "s2": "compensated"}


async def test_books_are_ok_after_a_clean_run(ledger: Ledger) -> None:
    report = await ledger.check_books(await _two_sagas(ledger))
    assert report.ok, report
    assert report.model_dump()["ok"] is True


async def test_books_flag_money_created(ledger: Ledger, redis_client: aioredis.Redis) -> None:
    outcomes = await _two_sagas(ledger)
    await redis_client.hincrby(ledger.keys.account("alice"), "balance", 7)
    report = await ledger.check_books(outcomes)
    assert not report.balanced
    assert report.imbalance == {"EUR": 7}
    assert not report.ok


async def test_books_flag_a_hold_left_behind(ledger: Ledger) -> None:
    outcomes = await _two_sagas(ledger)
    await ledger.authorize("s3:auth", "s3", "alice", eur(100))
    report = await ledger.check_books({**outcomes, "s3": "compensated"})
    assert report.holds_left == ["s3"]
    assert report.balanced  # a held amount is still money on the books
    assert not report.ok
    # A hold of a saga still running is not a violation.
    assert (await ledger.check_books({**outcomes, "s3": "running"})).ok


async def test_books_flag_a_double_capture(ledger: Ledger, redis_client: aioredis.Redis) -> None:
    outcomes = await _two_sagas(ledger)
    await redis_client.hincrby(ledger.keys.captures_per_saga, "s1", 1)
    report = await ledger.check_books(outcomes)
    assert report.double_captures == ["s1"]
    assert report.completed_not_captured == ["s1"]  # not *exactly* once any more
    assert not report.ok


async def test_books_flag_outcomes_that_disagree_with_captures(ledger: Ledger) -> None:
    await _two_sagas(ledger)
    report = await ledger.check_books({"s1": "compensated", "s2": "completed"})
    assert report.compensated_but_captured == ["s1"]
    assert report.completed_not_captured == ["s2"]
    assert report.balanced
    assert not report.ok


# -- one outcome per effect id, enforced by the ledger itself -----------------------------------


async def test_a_refused_authorize_stays_refused_for_its_effect_id(
    ledger: Ledger, redis_client: aioredis.Redis
) -> None:
    await ledger.authorize("x:auth", "x", "bob", eur(400))  # bob has 100 left
    with pytest.raises(StepRejected, match="insufficient_funds"):
        await ledger.authorize("s1:auth", "s1", "bob", eur(200))
    assert await ledger.void("x:auth") is True  # the money is back...
    with pytest.raises(StepRejected) as again:  # ...but s1:auth was refused for good
        await ledger.authorize("s1:auth", "s1", "bob", eur(200))
    assert again.value.reason == "insufficient_funds"
    assert await ledger.balance("bob") == 500
    refused = ledger.keys.hold(derive_id("hold", "s1:auth"))
    assert await redis_client.ttl(refused) > 0
    books = await ledger.snapshot()
    assert derive_id("hold", "s1:auth") not in books.holds  # a refusal is never a hold
    assert (await ledger.check_books({"s1": "compensated", "x": "compensated"})).ok
    await ledger.authorize("s2:auth", "s2", "bob", eur(200))  # another effect id may
    assert await ledger.balance("bob") == 300


async def test_void_of_a_refused_authorize_undoes_nothing_and_keeps_it_refused(
    ledger: Ledger, redis_client: aioredis.Redis
) -> None:
    with pytest.raises(StepRejected, match="insufficient_funds"):
        await ledger.authorize("s1:auth", "s1", "bob", eur(501))
    assert await ledger.void("s1:auth") is False
    assert await redis_client.exists(ledger.keys.void_marker("s1:auth"))
    with pytest.raises(StepRejected, match="insufficient_funds"):
        await ledger.authorize("s1:auth", "s1", "bob", eur(501))
    assert await ledger.balance("bob") == 500
    assert (await ledger.check_books({"s1": "compensated"})).ok


async def test_a_refused_capture_stays_refused_for_its_effect_id(
    ledger: Ledger, redis_client: aioredis.Redis
) -> None:
    hold_id = await ledger.authorize("s1:auth", "s1", "alice", eur(1_000))
    with pytest.raises(StepRejected, match="merchant_closed"):
        await ledger.capture(
            "s1:capture", "s1", hold_id, "closed", eur(1_000), attestation(ledger, "s1", "closed")
        )
    await redis_client.hset(ledger.keys.merchant("closed"), "open", "1")  # reopened meanwhile
    with pytest.raises(StepRejected) as again:
        await ledger.capture(
            "s1:capture", "s1", hold_id, "closed", eur(1_000), attestation(ledger, "s1", "closed")
        )
    assert again.value.reason == "merchant_closed"
    books = await ledger.snapshot()
    assert books.captures == {}
    assert books.captures_per_saga == {}
    assert books.holds[hold_id].status == "held"
    await ledger.capture(
        "s1:capture-2", "s1", hold_id, "closed", eur(1_000), attestation(ledger, "s1", "closed")
    )  # a new effect
    assert (await ledger.snapshot()).holds[hold_id].status == "captured"


async def test_concurrent_authorizes_of_one_effect_agree(ledger: Ledger) -> None:
    async def attempt() -> str:
        try:
            return await ledger.authorize("s1:auth", "s1", "bob", eur(300))
        except StepRejected as exc:
            return exc.reason

    answers = await asyncio.gather(*(attempt() for _ in range(10)))
    assert set(answers) == {derive_id("hold", "s1:auth")}
    assert await ledger.balance("bob") == 200
