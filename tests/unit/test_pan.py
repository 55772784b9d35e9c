"""The Luhn scan and the contract validators built on it: no card number enters at the edge."""

from __future__ import annotations

from uuid import uuid4

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from baton.cli import main
from contracts.base import StepFailed
from contracts.money import Money
from contracts.pan import MASK, contains_pan, luhn_valid, mask_pans
from participants.payments.contracts import CheckCompliance, PaymentAuthorized, StartTransaction

VISA, AMEX, MASTERCARD = "4111111111111111", "378282246310005", "5555555555554444"


@pytest.mark.parametrize("digits", [VISA, AMEX, MASTERCARD, "6011111111111117", "79927398713"])
def test_known_numbers_pass_luhn(digits: str) -> None:
    assert luhn_valid(digits)


@pytest.mark.parametrize(
    "text",
    [
        VISA,
        f"card {VISA} please",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "3782 822463 10005",  # an Amex grouping
        f"x {VISA}.",
        "\uff14" + "\uff11" * 15,  # full-width digits are digits too
    ],
)
def test_card_numbers_in_free_text_are_found(text: str) -> None:
    assert contains_pan(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "order 12345",
        "4111111111111112",  # 16 digits, Luhn fails
        "41111111111",  # 11 digits, too short even though Luhn passes
        f"x{VISA}y",  # glued to letters: part of an identifier, as digits in a hex id are
        "invoice 2024-01-31, 12:30",
        "4111  1111 1111 1111",  # two spaces split the run: groups of 4 are not a card
        "41111111111111111111",  # 20 digits: longer than any card number
    ],
)
def test_other_numbers_in_free_text_are_not_card_numbers(text: str) -> None:
    assert not contains_pan(text)


def test_inside_an_identifier_any_window_counts() -> None:
    assert not contains_pan(f"tok{VISA}0", anywhere=False)  # 17 digits in free text: no card
    assert contains_pan(f"tok{VISA}0", anywhere=True)
    assert contains_pan(f"tok_0{VISA}", anywhere=True)


def test_masking_keeps_the_rest_of_the_text() -> None:
    assert mask_pans(f"refused {VISA} and 4111-1111-1111-1111.") == f"refused {MASK} and {MASK}."
    assert mask_pans("nothing here") == "nothing here"


def _start(**changes: object) -> StartTransaction:
    fields: dict[str, object] = {
        "idempotency_key": "k-1", "account_id": "acct-1", "merchant_id": "m-1",
        "amount": Money(minor=100, currency="EUR"), "card_token": "tok_abcdef123456",
    }  # fmt: skip
    return StartTransaction.model_validate({**fields, **changes})


@pytest.mark.parametrize(
    "token", [f"tok_{VISA}", f"tok_x{VISA}y", f"tok_ab{AMEX}", f"tok_{MASTERCARD}00"]
)
def test_a_card_token_holding_a_card_number_is_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="card_token") as refused:
        _start(card_token=token)
    assert VISA not in str(refused.value.errors(include_input=False))
    with pytest.raises(ValidationError):
        CheckCompliance(card_token=token, merchant_id="m-1")


@pytest.mark.parametrize("token", ["tok_abcdef123456", "tok_4f9aB21c", "tok_12345678901"])
def test_vault_tokens_pass(token: str) -> None:
    assert _start(card_token=token).card_token == token


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("description", f"for card {VISA}"),
        ("description", "card 4111 1111 1111 1111"),
        ("description", "card 5555-5555-5555-4444 thanks"),
        ("idempotency_key", VISA),
    ],
)
def test_free_text_holding_a_card_number_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _start(**{field: value})


def test_free_text_without_a_card_number_passes() -> None:
    assert _start(description="order 1234567812345678, table 12").description.startswith("order")


def test_ids_the_participants_make_up_are_never_refused_for_their_digits() -> None:
    """A ledger id is a hash: refusing one whose digits pass Luhn would wedge its saga."""
    assert PaymentAuthorized(hold_id=f"hold_{VISA}").hold_id == f"hold_{VISA}"


def test_random_hex_keys_never_look_like_card_numbers() -> None:
    keys = [uuid4().hex for _ in range(20_000)]
    assert not [key for key in keys if contains_pan(key)]


def test_a_refusal_reason_has_card_numbers_masked_not_refused() -> None:
    failed = StepFailed(reason=f"card {VISA} declined", detail=f"gateway said {VISA}")
    assert VISA not in failed.reason
    assert VISA not in failed.detail
    assert MASK in failed.reason


def test_baton_start_refuses_a_card_number_without_echoing_it() -> None:
    result = CliRunner().invoke(
        main,
        ["start", "--account", "a-1", "--merchant", "m-1", "--amount", "1.00",
         "--card-token", f"tok_{VISA}"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "holds a card number" in result.stderr  # the guard on every argument refused it
    assert VISA not in result.output + result.stderr


def test_a_rejected_start_is_answered_without_a_card_number_as_its_key() -> None:
    from orchestrator.core.answers import idempotency_key_of

    assert idempotency_key_of(f'{{"idempotency_key": "{VISA}"}}'.encode()) == ""
    assert idempotency_key_of(b'{"idempotency_key": "k-1"}') == "k-1"
