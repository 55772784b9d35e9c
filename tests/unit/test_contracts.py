"""Contracts and the codec: every malformed message becomes a ContractError with a reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts import envelope as env
from contracts.envelope import Envelope
from contracts.money import Money
from contracts.topology import Topology
from messaging.errors import ContractError
from messaging.transport.codec import Wire, decode, encode
from participants.payments.contracts import AuthorizePayment, StartTransaction, payment_contracts
from tests.support.sagas import payment_registry

TYPED = payment_contracts()


def a_start() -> StartTransaction:
    return StartTransaction(
        idempotency_key="k",
        account_id="acct-1",
        merchant_id="m-1",
        amount=Money(minor=1250, currency="EUR"),
        card_token="tok_abcdef123456",
    )


def test_money_is_positive_integer_minor_units_of_a_known_currency() -> None:
    assert str(Money(minor=1250, currency="EUR")) == "12.50 EUR"
    assert str(Money(minor=500, currency="JPY")) == "500 JPY"
    for bad in (
        {"minor": 0, "currency": "EUR"},
        {"minor": -5, "currency": "EUR"},
        {"minor": 12.5, "currency": "EUR"},
        {"minor": 1, "currency": "XXX"},
        {"minor": "12", "currency": "EUR"},
    ):
        with pytest.raises(ValidationError):
            Money.model_validate(bad)


def test_card_numbers_are_refused_where_a_token_belongs() -> None:
    with pytest.raises(ValidationError):
        a_start().model_validate({**a_start().model_dump(), "card_token": "4111111111111111"})


def test_sensitive_fields_are_redacted() -> None:
    redacted = a_start().redacted()
    assert redacted["card_token"] == "***"
    assert redacted["account_id"] == "***"
    assert redacted["merchant_id"] == "m-1"


def test_encode_then_decode_round_trips() -> None:
    body = AuthorizePayment(account_id="acct-1", amount=Money(minor=1, currency="EUR"))
    envelope = Envelope(
        kind=body.KIND,
        saga_id="s",
        step="authorize_payment",
        attempt=3,
        effect_id="e",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    decoded_envelope, decoded_body = decode(encode(envelope, body), TYPED)
    assert decoded_body == body
    assert decoded_envelope == envelope


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (Wire(b"{", kind=StartTransaction.KIND), "not_json"),
        (Wire(b"{}", kind=StartTransaction.KIND), "invalid_body"),
        (Wire(b"{}", kind="payments.unknown.v9"), "unknown_type"),
        (Wire(b"{}", kind=None), "missing_type"),
        (Wire(b"{}", kind=StartTransaction.KIND, content_type="text/xml"), "wrong_content_type"),
        (Wire(b" " * 300_000, kind=StartTransaction.KIND), "body_too_large"),
        (
            Wire(
                b"{}", kind=AuthorizePayment.KIND, headers={env.H_ATTEMPT: "x", env.H_SAGA_ID: "s"}
            ),
            "invalid_headers",
        ),
        (
            Wire(b"{}", kind=AuthorizePayment.KIND, headers={env.H_SCHEMA: 99, env.H_SAGA_ID: "s"}),
            "unsupported_schema",
        ),
    ],
)
def test_malformed_messages_are_contract_errors(wire: Wire, reason: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode(wire, TYPED, require_saga=False)
    assert caught.value.reason == reason


def test_commands_and_replies_need_a_saga_id() -> None:
    wire = Wire(
        AuthorizePayment(account_id="a", amount=Money(minor=1, currency="EUR"))
        .model_dump_json()
        .encode(),
        kind=AuthorizePayment.KIND,
    )
    with pytest.raises(ContractError, match="missing_header"):
        decode(wire, TYPED)


def test_every_contract_kind_is_versioned_and_unique() -> None:
    for registry in (TYPED, payment_registry()):
        assert all(kind.rsplit(".", 1)[-1].startswith("v") for kind in registry)
        assert len(set(registry.models())) == len(registry)


def test_a_compiled_model_decodes_what_the_typed_class_encodes() -> None:
    body = a_start()
    envelope = Envelope(kind=body.KIND, saga_id="-")
    _, decoded = decode(encode(envelope, body), payment_registry(), require_saga=False)
    assert type(decoded) is not StartTransaction  # the package's own model, compiled
    assert decoded.model_dump() == body.model_dump()
    assert decoded.SENSITIVE == body.SENSITIVE


def test_topology_names_carry_the_namespace() -> None:
    t = Topology(namespace="ns.")
    assert t.command_queue("risk") == "ns.baton.cmd.risk"
    assert t.dead_letter_queue(t.command_queue("risk")) == "ns.baton.dead.cmd.risk"
    assert t.dead_letter_queue(t.start_queue) == "ns.baton.dead.start"
    assert t.event_routing_key("payment", "completed") == "saga.payment.completed"


def test_topology_lists_every_queue_and_exchange_it_declares() -> None:
    t = Topology(namespace="ns.")
    assert t.work_queues(["risk"]) == ["ns.baton.start", "ns.baton.replies", "ns.baton.cmd.risk"]
    assert t.all_queues(["risk"])[3:] == [
        "ns.baton.dead.start",
        "ns.baton.dead.replies",
        "ns.baton.dead.cmd.risk",
    ]
    assert all(name.startswith("ns.baton.") for name in t.exchanges)
