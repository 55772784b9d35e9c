"""The payment participants' typed classes and the payment package's contracts cannot drift:
same kinds, same JSON Schema (prose and Baton's marks aside), same SENSITIVE, same PAN rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.base import Contract
from contracts.compiler import load_contracts
from contracts.registry import ContractRegistry, role_of, shape
from orchestrator.runtime.packages import default_package_paths
from participants.payments import contracts as typed

PAN = "4111111111111111"
PACKAGE = next(p for p in default_package_paths() if p.name == "payment")
COMPILED = {m.KIND: m for m in load_contracts(Path(PACKAGE) / "contracts")}
TYPED = {m.KIND: m for m in typed.MODELS}
# A valid body of each message, then the fields whose PAN rule is compared.
MONEY = {"minor": 1250, "currency": "EUR"}
SAMPLES: dict[str, dict[str, Any]] = {
    "payments.start_transaction.v1": {
        "idempotency_key": "k-1", "account_id": "acct-1", "merchant_id": "m-1",
        "amount": MONEY, "card_token": "tok_abcdef123456", "description": "a coffee",
    },
    "payments.authorize_payment.v1": {"account_id": "acct-1", "amount": MONEY},
    "payments.payment_authorized.v1": {"hold_id": "hold_1"},
    "payments.void_authorization.v1": {"hold_id": None},
    "payments.authorization_voided.v1": {"released": True},
    "payments.assess_risk.v1": {"account_id": "acct-1", "merchant_id": "m-1", "amount": MONEY},
    "payments.risk_assessed.v1": {"score": 42},
    "payments.release_risk_exposure.v1": {},
    "payments.risk_exposure_released.v1": {"released": False},
    "payments.check_compliance.v1": {"card_token": "tok_abcdef123456", "merchant_id": "m-1"},
    "payments.compliance_approved.v1": {"attestation_id": "att_1"},
    "payments.revoke_attestation.v1": {},
    "payments.attestation_revoked.v1": {"revoked": True},
    "payments.capture_transaction.v1": {
        "hold_id": "hold_1", "merchant_id": "m-1", "amount": MONEY, "attestation_id": "att_1",
    },
    "payments.transaction_captured.v1": {"capture_id": "cap_1"},
}  # fmt: skip
# Values each class must treat alike: refused (tokens, text) or kept (ids are not scanned).
PROBES: list[tuple[str, str, str]] = [
    ("payments.start_transaction.v1", "card_token", f"tok_{PAN}"),
    ("payments.start_transaction.v1", "description", f"card {PAN}"),
    ("payments.start_transaction.v1", "description", "x" * 201),
    ("payments.start_transaction.v1", "idempotency_key", PAN),
    ("payments.start_transaction.v1", "account_id", "not ok!"),
    ("payments.check_compliance.v1", "card_token", f"tok_ab{PAN}"),
    ("payments.payment_authorized.v1", "hold_id", f"hold_{PAN}"),
    ("payments.capture_transaction.v1", "attestation_id", f"att_{PAN}"),
    ("payments.risk_assessed.v1", "score", "101"),
    ("payments.authorize_payment.v1", "amount", "12.50"),
]


def test_the_same_kinds() -> None:
    assert set(COMPILED) == set(TYPED)
    assert set(SAMPLES) == set(TYPED)


@pytest.mark.parametrize("kind", sorted(TYPED))
def test_each_typed_class_has_its_compiled_models_schema_and_sensitive_fields(kind: str) -> None:
    ours, theirs = TYPED[kind], COMPILED[kind]
    assert ours.SENSITIVE == theirs.SENSITIVE
    assert role_of(ours) == role_of(theirs)
    assert ours.__name__ == theirs.__name__  # the AsyncAPI document names messages by it
    assert (ours.__doc__ or None) == (theirs.__doc__ or None)
    assert shape(ours) == shape(theirs)  # the JSON Schema, titles/descriptions/marks aside
    assert _unmarked(ours.model_json_schema()) == _unmarked(theirs.model_json_schema())


@pytest.mark.parametrize("kind", sorted(TYPED))
def test_each_pair_reads_a_valid_body_alike(kind: str) -> None:
    ours = TYPED[kind].model_validate(SAMPLES[kind])
    theirs = COMPILED[kind].model_validate(SAMPLES[kind])
    assert ours.model_dump(mode="json") == theirs.model_dump(mode="json")
    assert ours.redacted() == theirs.redacted()


@pytest.mark.parametrize(("kind", "field", "value"), PROBES)
def test_each_pair_judges_a_doubtful_value_alike(kind: str, field: str, value: str) -> None:
    verdicts = [_accepts(model, {**SAMPLES[kind], field: value})
                for model in (TYPED[kind], COMPILED[kind])]  # fmt: skip
    assert verdicts[0] == verdicts[1]


def test_the_typed_registry_and_the_packages_merge() -> None:
    registry = ContractRegistry(COMPILED.values()).merge(typed.payment_contracts())
    assert all(registry.get(kind) is COMPILED[kind] for kind in COMPILED)


def _accepts(model: type[Contract], body: dict[str, Any]) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


def _unmarked(schema: Any) -> Any:
    """A schema without Baton's ``x-baton-*`` marks, which only compiled models carry."""
    if isinstance(schema, dict):
        return {k: _unmarked(v) for k, v in schema.items() if not str(k).startswith("x-baton-")}
    if isinstance(schema, list):
        return [_unmarked(v) for v in schema]
    return schema
