"""Risk scoring and PCI token rules as pure functions, and the demo world's crafted failures."""

from __future__ import annotations

import pytest

from contracts.money import Money
from messaging.errors import StepRejected
from participants.payments.demo import DemoWorld, _world
from participants.payments.pci import check_merchant, check_token, fingerprint, well_formed
from participants.payments.risk import RiskRules, judge, points, score

RULES = RiskRules()


def eur(major: float) -> Money:
    return Money(minor=round(major * 100), currency="EUR")


@pytest.mark.parametrize(
    ("major", "expected"),
    [(0.01, 10), (99.99, 10), (100, 30), (999.99, 30), (1_000, 50), (4_999.99, 50), (5_000, 70)],
)
def test_amount_bands(major: float, expected: int) -> None:
    assert points(major, RULES.amount_bands, RULES.amount_top) == expected


@pytest.mark.parametrize(
    ("spent_before", "amount", "expected"),
    [
        (0, 50, 10),  # small payment, no history
        (1_900, 50, 10),  # window total 1,950: still no exposure points
        (1_960, 50, 30),  # window total 2,010: +20
        (9_990, 50, 50),  # window total 10,040: +40
        (0, 5_000, 90),  # 70 for the amount, and the amount itself is 5,000 of exposure
        (0, 1_500, 50),
    ],
)
def test_score_adds_amount_and_exposure_points(
    spent_before: int, amount: int, expected: int
) -> None:
    assert score(eur(amount), spent_before * 100, blocked=False, rules=RULES) == expected


def test_a_blocked_account_scores_100_whatever_the_amount() -> None:
    assert score(eur(0.01), 0, blocked=True, rules=RULES) == 100


def test_bands_are_in_major_units_of_the_currency() -> None:
    yen = Money(minor=150, currency="JPY")  # 150 yen: exponent 0
    assert score(yen, 0, blocked=False, rules=RULES) == 30


def test_score_is_capped_at_100() -> None:
    harsh = RiskRules(amount_top=90, exposure_top=90)
    assert score(eur(10_000), 0, blocked=False, rules=harsh) == 100


def test_judge_refuses_only_above_the_threshold() -> None:
    judge(80, RULES)
    with pytest.raises(StepRejected) as refused:
        judge(81, RULES)
    assert refused.value.reason == "risk_too_high"
    judge(90, RiskRules(threshold=90))


@pytest.mark.parametrize(
    ("token", "ok"),
    [
        ("tok_4f9aB21c", True),
        ("tok_demo00000001", True),
        ("tok_1234567", False),  # body too short
        ("tok_" + "a" * 65, False),  # body too long
        ("tok_abc-defgh", False),  # not alphanumeric
        ("card_4f9aB21c", False),  # wrong prefix
        ("tok_4111111111111111", False),  # a card number pasted where a token belongs
        ("tok_12345678901", True),  # 11 digits: too short to be a card number
    ],
)
def test_token_shape(token: str, ok: bool) -> None:
    assert well_formed(token) is ok


def test_revoked_or_malformed_tokens_are_refused() -> None:
    check_token("tok_4f9aB21c", revoked=False)
    for token, revoked in (("tok_4f9aB21c", True), ("tok_4111111111111111", False)):
        with pytest.raises(StepRejected) as refused:
            check_token(token, revoked=revoked)
        assert refused.value.reason == "invalid_card_token"


def test_revoked_list_stores_a_fingerprint_not_the_token() -> None:
    assert "tok_4f9aB21c" not in fingerprint("tok_4f9aB21c")
    assert fingerprint("tok_4f9aB21c") == fingerprint("tok_4f9aB21c")


@pytest.mark.parametrize("status", [None, "expired", "suspended", "COMPLIANT"])
def test_only_compliant_merchants_pass(status: str | None) -> None:
    check_merchant("compliant")
    with pytest.raises(StepRejected) as refused:
        check_merchant(status)
    assert refused.value.reason == "merchant_not_compliant"


@pytest.fixture
def world() -> DemoWorld:
    return _world("run1", accounts=3, merchants=2, currency="EUR")


def test_demo_transactions_pick_the_crafted_inputs(world: DemoWorld) -> None:
    ok = world.transaction(4)
    assert ok.account_id in world.accounts
    assert ok.merchant_id in world.merchants
    assert ok.card_token in world.tokens
    assert world.transaction(4, fails_at="authorize").account_id == world.poor_account
    assert world.transaction(4, fails_at="risk").account_id == world.blocked_account
    assert world.transaction(4, fails_at="pci").card_token == world.revoked_token
    assert world.transaction(4, fails_at="pci_merchant").merchant_id == world.non_compliant_merchant
    assert world.transaction(4, fails_at="capture").merchant_id == world.closed_merchant
    assert well_formed(world.revoked_token)  # refused for being revoked, not for its shape
    assert len({world.transaction(n).idempotency_key for n in range(10)}) == 10
