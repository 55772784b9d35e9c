"""Sensitive input sealed by the store and opened for the engine; history kept free of it."""

from __future__ import annotations

import pytest

from contracts.money import Money
from messaging.errors import DefinitionError
from messaging.trust.sealing import Sealer, generate_key, is_sealed, parse_keys
from orchestrator.core.catalog import Catalog
from orchestrator.core.effects import ReplyReceived
from orchestrator.core.engine import decide, start
from orchestrator.runtime.sealed_fields import SealedFields, sensitive_fields
from orchestrator.runtime.store import InMemorySagaStore
from participants.payments.contracts import StartTransaction
from tests.support.sagas import catalog, parse, payment_data, payment_definition, payment_registry

PAYMENT = payment_definition()
TOKEN, ACCOUNT = "tok_sealme0123", "acct-sealme-7"
SEALER = Sealer(parse_keys(f'{{"k1": "{generate_key()}"}}'), "k1")


def _start(**changes: object) -> StartTransaction:
    fields: dict[str, object] = {
        "idempotency_key": "k-1", "account_id": ACCOUNT, "merchant_id": "m-1",
        "amount": Money(minor=100, currency="EUR"), "card_token": TOKEN,
    }  # fmt: skip
    return StartTransaction.model_validate({**fields, **changes})


def test_the_payment_saga_seals_its_start_contracts_sensitive_fields() -> None:
    lookup = sensitive_fields(catalog(PAYMENT))
    assert lookup("payment", PAYMENT.version) == frozenset({"card_token", "account_id"})
    assert lookup("payment", 99) is None


async def test_the_store_keeps_them_sealed_and_the_engine_gets_them_plain() -> None:
    sealed = SealedFields(SEALER, sensitive_fields(catalog(PAYMENT)))
    store = InMemorySagaStore(sealed=sealed)
    decision = start(PAYMENT, "s-1", _start(), 1000.0)
    assert await store.create(decision.state, decision.history, ())
    kept = store.sagas["s-1"].input
    assert is_sealed(kept["card_token"])
    assert is_sealed(kept["account_id"])
    assert kept["merchant_id"] == "m-1"
    assert TOKEN not in str(kept)
    assert ACCOUNT not in str(kept)
    loaded = await store.load("s-1")
    assert loaded is not None
    assert loaded.input == decision.state.input


def test_a_sealed_field_copied_to_another_saga_does_not_open() -> None:
    sealed = SealedFields(SEALER, sensitive_fields(catalog(PAYMENT)))
    one = sealed.seal_state(start(PAYMENT, "s-1", _start(), 1000.0).state)
    other = start(PAYMENT, "s-2", _start(), 1000.0).state
    moved = other.model_copy(update={"input": one.input})
    with pytest.raises(Exception, match="moved from another place"):
        sealed.open_state(moved)


def test_a_saga_whose_definition_is_not_loaded_is_refused_not_written_in_clear() -> None:
    sealed = SealedFields(SEALER, sensitive_fields(Catalog([], payment_registry())))
    with pytest.raises(DefinitionError, match="cannot seal"):
        sealed.seal_state(start(PAYMENT, "s-1", _start(), 1000.0).state)


def test_a_state_stored_before_sealing_reads_back_as_it_was() -> None:
    sealed = SealedFields(SEALER, sensitive_fields(catalog(PAYMENT)))
    plain = start(PAYMENT, "s-1", _start(), 1000.0).state
    assert sealed.open_state(plain) == plain


def test_an_outbox_payload_is_bound_to_its_entry() -> None:
    sealed = SealedFields(SEALER, sensitive_fields(catalog(PAYMENT)))
    stored = sealed.seal_entry("e-1", f'{{"card_token":"{TOKEN}"}}')
    assert TOKEN not in stored
    assert TOKEN in sealed.open_entry("e-1", stored.encode())
    with pytest.raises(Exception, match="moved from another place"):
        sealed.open_entry("e-2", stored)


def test_a_payload_that_cannot_be_built_leaves_no_input_value_in_history() -> None:
    """A validation error's text quotes its input; the history must not."""
    data = payment_data()
    # a definition bug: the account id fed where a card token belongs
    data["steps"][2]["action"]["payload"]["card_token"] = "input.account_id"
    broken = parse(data)
    decision = start(broken, "s-1", _start(), 1000.0)
    state = decision.state
    for name, body in (("authorize_payment", {"hold_id": "h-1"}), ("assess_risk", {"score": 1})):
        step = broken.step(name)
        reply = ReplyReceived(name, "forward", 1, step.action.reply, body, sender=step.participant)
        decided = decide(broken, state, reply, 1001.0)
        state, history = decided.state, decided.history
    texts = [entry.detail for entry in history] + [state.reason or ""]
    assert any("invalid_payload" in text for text in texts)
    assert not any(ACCOUNT in text for text in texts)
