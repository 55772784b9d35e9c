"""Message signatures: the byte layout, every tampering caught, key ids, rotation, settings."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from baton.cli import main
from contracts import envelope as env
from contracts.events import SagaEvent
from contracts.money import Money
from contracts.topology import Topology
from messaging.errors import ContractError, SigningKeyError
from messaging.settings import Settings, SigningSettings
from messaging.transport.codec import MAX_BODY_BYTES, Wire
from messaging.trust.signing import (
    SIGNED,
    Keyring,
    KeySet,
    SigningKey,
    binary32,
    binary32_up,
    private_key,
    public_text,
    render,
    signed_bytes,
)
from orchestrator.core.effects import Decision, EmitEvent, SendCommand
from orchestrator.core.engine import start
from orchestrator.runtime.outbox import OutboxEntry, outbox_entries
from participants.payments.contracts import StartTransaction
from tests.support.sagas import payment_definition

PROTOCOL = Path(__file__).parents[2] / "docs" / "protocol.md"
KEYS = KeySet.generate(["orchestrator", "payment", "risk", "cli"])

# The test vector of docs/protocol.md, "Signatures": RFC 8032's first test key.
VECTOR_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
VECTOR_PUBLIC = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
VECTOR_BODY = b'{"account_id":"acct-1","amount":{"minor":1250,"currency":"EUR"}}'
VECTOR_SIGNATURE = (
    "68q99UMN4tLOT9GkcSzoESFIm_SAGpZr0OLSBl5cKDTiVJIlDk3Lltrd6FJhSLPyaKeKxI1wtMbgW8DYM7vBAw"
)
VECTOR_SIGNED = (
    b"baton-signature-v1\n"
    b"correlation_id=payment-1b2c\n"
    b"message_id=3f2a9c0e5b7d41e8a6c1d2e3f4a5b6c7.1\n"
    b"reply_to=\n"
    b"type=payments.authorize_payment.v1\n"
    b"x-baton-attempt=1\n"
    b"x-baton-compensates=\n"
    b"x-baton-deadline=1712345728.0\n"
    b"x-baton-effect-id=3f2a9c0e5b7d41e8a6c1d2e3f4a5b6c7\n"
    b"x-baton-key-id=test-1\n"
    b"x-baton-phase=forward\n"
    b"x-baton-saga=payment\n"
    b"x-baton-saga-id=payment-1b2c\n"
    b"x-baton-schema=1\n"
    b"x-baton-sent-at=\n"
    b"x-baton-signer=orchestrator\n"
    b"x-baton-step=authorize_payment\n" + VECTOR_BODY
)


def vector_wire() -> Wire:
    return Wire(
        body=VECTOR_BODY,
        kind="payments.authorize_payment.v1",
        message_id="3f2a9c0e5b7d41e8a6c1d2e3f4a5b6c7.1",
        correlation_id="payment-1b2c",
        headers={
            env.H_SAGA_ID: "payment-1b2c",
            env.H_SAGA: "payment",
            env.H_STEP: "authorize_payment",
            env.H_PHASE: "forward",
            env.H_EFFECT_ID: "3f2a9c0e5b7d41e8a6c1d2e3f4a5b6c7",
            env.H_ATTEMPT: 1,
            env.H_SCHEMA: 1,
            env.H_DEADLINE: 1712345728.0,  # single precision, as AMQP carries it
            env.H_TRACEPARENT: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
    )


def vector_keyring() -> Keyring:
    key = private_key(VECTOR_SEED)
    trusted = {"orchestrator": {"test-1": key.public_key()}}
    return Keyring("orchestrator", trusted, key_id="test-1", private=key)


def test_the_documented_test_vector() -> None:
    signed = vector_keyring().sign(vector_wire())
    assert public_text(private_key(VECTOR_SEED).public_key()) == VECTOR_PUBLIC
    assert signed_bytes(signed) == VECTOR_SIGNED
    assert signed.headers[env.H_SIGNATURE] == VECTOR_SIGNATURE
    assert signed.headers[env.H_SIGNER] == "orchestrator"
    assert signed.headers[env.H_KEY_ID] == "test-1"
    assert vector_keyring().verify(signed) == "orchestrator"
    page = PROTOCOL.read_text()
    for text in (VECTOR_SEED, VECTOR_PUBLIC, VECTOR_SIGNATURE, VECTOR_BODY.decode()):
        assert text in page, f"docs/protocol.md lost the test vector's {text[:20]}..."
    for line in VECTOR_SIGNED.decode().splitlines()[1:-1]:
        assert f"\n{line}\n" in page, f"docs/protocol.md lost the signed line {line!r}"


def test_the_canonical_line_names_every_signed_field_sorted() -> None:
    assert list(SIGNED) == sorted(SIGNED)
    page = PROTOCOL.read_text()
    for name in SIGNED:
        assert f"`{name}`" in page, name


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""), ("abc", "abc"), (b"abc", "abc"), (True, "true"), (False, "false"),
        (0, "0"), (-3, "-3"), (1712345678.25, "1712345678.25"), (1712345678.0, "1712345678.0"),
        (0.1, "0.1"), (1712345678.123, "1712345678.123"),
    ],
)  # fmt: skip
def test_values_render_as_documented(value: Any, text: str) -> None:
    assert render(value) == text


def test_float_headers_are_signed_as_the_single_precision_that_arrives() -> None:
    """pamqp writes a Python float as AMQP ``f``: a deadline arrives on a 128 s grid."""
    wire = a_command()
    exact = replace(wire, headers={**wire.headers, env.H_DEADLINE: 1712345678.25})
    signed_ = KEYS.keyring("orchestrator").sign(exact)
    assert signed_.headers[env.H_DEADLINE] == 1712345728.0 == binary32(1712345678.25)
    assert KEYS.keyring("payment").verify(signed_) == "orchestrator"
    assert binary32_up(1712345678.25) == 1712345728.0
    assert binary32_up(1712345728.0) == 1712345728.0
    assert binary32_up(1712345729.0) == 1712345856.0  # the next step up, never down
    with pytest.raises(ValueError, match="single-precision"):
        binary32(1e300)


@pytest.mark.parametrize(
    "value", ["a\nb", b"\xff", float("nan"), float("inf"), [1], {"a": 1}, 1.5j]
)
def test_values_without_a_rendering_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the message varies
        render(value)


def a_command() -> Wire:
    return Wire(
        b'{"hold_id":"hold_1","merchant_id":"m-1"}',
        "payments.capture_transaction.v1",
        "effect-1.1",
        "saga-1",
        reply_to=None,
        headers={
            env.H_SAGA_ID: "saga-1", env.H_SAGA: "payment", env.H_STEP: "capture_transaction",
            env.H_PHASE: "forward", env.H_EFFECT_ID: "effect-1", env.H_ATTEMPT: 1,
            env.H_SCHEMA: 1, env.H_DEADLINE: 1712345678.125,
        },
    )  # fmt: skip


def signed(signer: str = "orchestrator", wire: Wire | None = None) -> Wire:
    return KEYS.keyring(signer).sign(wire or a_command())


def reason(keyring: Keyring, wire: Wire) -> str:
    with pytest.raises(ContractError) as refused:
        keyring.verify(wire)
    return refused.value.reason


def test_a_signed_message_verifies_with_its_signer() -> None:
    for signer in ("orchestrator", "payment", "cli"):
        assert KEYS.keyring("risk").verify(signed(signer)) == signer


PROPERTY_OF = {"type": "kind", "message_id": "message_id", "correlation_id": "correlation_id",
               "reply_to": "reply_to"}  # fmt: skip


@pytest.mark.parametrize("name", [n for n in SIGNED if n not in (env.H_SIGNER, env.H_KEY_ID)])
@pytest.mark.parametrize("change", ["altered", "removed_or_added"])
def test_any_signed_field_changed_breaks_the_signature(name: str, change: str) -> None:
    wire = signed()
    if name in PROPERTY_OF:
        attribute = PROPERTY_OF[name]
        new = "other" if change == "altered" or getattr(wire, attribute) is None else None
        forged = replace(wire, **{attribute: new})  # type: ignore[arg-type] # a str property
    else:
        headers = dict(wire.headers)
        if change == "altered":
            headers[name] = 2 if isinstance(headers.get(name), int) else "other"
        elif name in headers:
            del headers[name]
        else:
            headers[name] = "injected"
        forged = replace(wire, headers=headers)
    assert reason(KEYS.keyring("payment"), forged) == "bad_signature"


def test_a_changed_body_breaks_the_signature() -> None:
    wire = signed()
    for body in (b'{"hold_id":"hold_2","merchant_id":"m-1"}', wire.body + b" ", b""):
        assert reason(KEYS.keyring("payment"), replace(wire, body=body)) == "bad_signature"


def test_unsigned_headers_may_change_and_dead_letter_headers_may_be_added() -> None:
    wire = signed()
    extra = {env.H_TRACEPARENT: "00-1-2-01", env.H_REASON: "unknown_saga",
             env.H_SOURCE_QUEUE: "baton.replies", "x-other": 1}  # fmt: skip
    moved = replace(wire, headers={**wire.headers, **extra}, content_type=None)
    assert KEYS.keyring("payment").verify(moved) == "orchestrator"


def test_a_signature_by_another_key_of_a_trusted_signer_fails() -> None:
    wire = signed()
    impostor = SigningKey.generate("orchestrator", key_id=KEYS.keys["orchestrator"].key_id)
    forged = KeySet([impostor]).keyring("orchestrator").sign(wire)
    assert reason(KEYS.keyring("payment"), forged) == "bad_signature"


def test_unsigned_and_badly_encoded_signatures() -> None:
    keyring = KEYS.keyring("payment")
    assert reason(keyring, a_command()) == "unsigned"
    wire = signed()
    for missing in (env.H_SIGNER, env.H_KEY_ID, env.H_SIGNATURE):
        headers = {k: v for k, v in wire.headers.items() if k != missing}
        assert reason(keyring, replace(wire, headers=headers)) == "unsigned"
    for garbage in ("!!!", "AAAA", "", 17, b"\xff"):
        headers = {**wire.headers, env.H_SIGNATURE: garbage}
        assert reason(keyring, replace(wire, headers=headers)) in ("bad_signature", "unsigned")


def test_unknown_signers_and_key_ids_are_refused() -> None:
    keyring = KEYS.keyring("payment")
    stranger = KeySet.generate(["mallory"]).keyring("mallory").sign(a_command())
    assert reason(keyring, stranger) == "unknown_key"
    wire = signed()
    headers = {**wire.headers, env.H_KEY_ID: "retired"}
    assert reason(keyring, replace(wire, headers=headers)) == "unknown_key"
    as_other = {**wire.headers, env.H_SIGNER: "cli"}  # another signer's name, same key id
    assert reason(keyring, replace(wire, headers=as_other)) == "unknown_key"


def test_verify_from_refuses_a_valid_signature_of_the_wrong_sender() -> None:
    keyring = KEYS.keyring("payment")
    assert keyring.verify_from(signed("orchestrator"), ("orchestrator",), "commands")
    with pytest.raises(ContractError) as refused:
        keyring.verify_from(signed("cli"), ("orchestrator",), "commands")
    assert refused.value.reason == "wrong_sender"
    assert "cli may not send commands" in str(refused.value)


def test_a_huge_body_is_refused_before_it_is_hashed() -> None:
    wire = signed()
    huge = replace(wire, body=b" " * (MAX_BODY_BYTES + 1))
    assert reason(KEYS.keyring("payment"), huge) == "body_too_large"


def test_a_line_feed_in_a_signed_value_is_refused_both_ways() -> None:
    wire = a_command()
    smuggled = replace(wire, headers={**wire.headers, env.H_STEP: "capture\nx-baton-step=void"})
    with pytest.raises(ValueError, match="line feed"):
        KEYS.keyring("orchestrator").sign(smuggled)
    good = signed()
    forged = replace(good, headers={**good.headers, env.H_STEP: "a\nb"})
    assert reason(KEYS.keyring("payment"), forged) == "bad_signature"


def test_rotation_two_keys_of_a_signer_are_valid_at_once() -> None:
    old, new = SigningKey.generate("payment", "old"), SigningKey.generate("payment", "new")
    both = {"payment": {"old": old.private.public_key(), "new": new.private.public_key()}}
    orchestrator = Keyring("orchestrator", both)
    by_old = Keyring("payment", both, key_id="old", private=old.private).sign(a_command())
    by_new = Keyring("payment", both, key_id="new", private=new.private).sign(a_command())
    assert orchestrator.verify(by_old) == orchestrator.verify(by_new) == "payment"
    after = Keyring("orchestrator", {"payment": {"new": new.private.public_key()}})
    assert after.verify(by_new) == "payment"
    assert reason(after, by_old) == "unknown_key"  # the old key removed at the end


def test_a_keyring_without_a_private_key_only_verifies() -> None:
    trusted = {"orchestrator": {"k": SigningKey.generate("x").private.public_key()}}
    verifier = Keyring("tool", trusted)
    with pytest.raises(SigningKeyError, match="BATON_SIGNING__PRIVATE_KEY"):
        verifier.sign(a_command())


# -- settings ------------------------------------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KEYS.env("payment", upstreams=["cli", "shop"]).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert KEYS.keys["payment"].private_text not in repr(settings)
    keyring = Keyring.from_settings(settings.signing, role="ignored")
    assert (keyring.signer, keyring.key_id) == ("payment", KEYS.keys["payment"].key_id)
    assert keyring.upstreams == {"cli", "shop"}
    assert KEYS.keyring("orchestrator").verify(keyring.sign(a_command())) == "payment"


def test_the_signer_defaults_to_the_role() -> None:
    values = KEYS.settings("risk")
    del values["signer"]
    keyring = Keyring.from_settings(SigningSettings.model_validate(values), role="risk")
    assert keyring.signer == "risk"


@pytest.mark.parametrize(
    ("drop", "names"),
    [
        ("private_key", "BATON_SIGNING__PRIVATE_KEY"),
        ("public_keys", "BATON_SIGNING__PUBLIC_KEYS"),
        ("key_id", "BATON_SIGNING__KEY_ID"),
    ],
)
def test_missing_keys_name_the_variable(drop: str, names: str) -> None:
    values = {k: v for k, v in KEYS.settings("payment").items() if k != drop}
    with pytest.raises(SigningKeyError, match=names) as refused:
        Keyring.from_settings(SigningSettings.model_validate(values), role="payment")
    assert KEYS.keys["payment"].private_text not in str(refused.value)


def test_bad_keys_are_refused_without_echoing_them() -> None:
    values = KEYS.settings("payment")
    for bad in ({"private_key": "not-base64!"}, {"private_key": base64.b64encode(b"x").decode()},
                {"public_keys": {"risk": {"k": "nope"}}},
                {"private_key": KEYS.keys["risk"].private_text}):  # fmt: skip
        with pytest.raises(SigningKeyError) as refused:
            Keyring.from_settings(SigningSettings.model_validate({**values, **bad}), role="x")
        assert all(str(v) not in str(refused.value) for v in bad.values() if len(str(v)) > 20)


def test_require_trust_names_the_missing_signers() -> None:
    keyring = KEYS.keyring("orchestrator")
    keyring.require_trust(["payment", "cli"])
    with pytest.raises(SigningKeyError, match="trusts no key of pci, transaction"):
        keyring.require_trust(["payment", "pci", "transaction"])


def test_a_signing_file_fills_what_the_environment_left_unset(tmp_path: Path) -> None:
    file = tmp_path / "signing.json"
    file.write_text(json.dumps(KEYS.settings("payment")))
    settings = SigningSettings(file=str(file), upstreams=["shop"])
    keyring = Keyring.from_settings(settings, role="x")
    assert (keyring.signer, keyring.upstreams) == ("payment", frozenset({"shop"}))
    file.write_text("{not json " + KEYS.keys["payment"].private_text)
    with pytest.raises(SigningKeyError, match="BATON_SIGNING__FILE") as refused:
        Keyring.from_settings(settings, role="x")
    assert KEYS.keys["payment"].private_text not in str(refused.value)


# -- the outbox signs what it stores ----------------------------------------------------------


def sends(decision: Decision) -> list[SendCommand]:
    return [e for e in decision.effects if isinstance(e, SendCommand)]


def test_outbox_entries_are_signed_and_stay_valid_when_stored() -> None:
    payment = StartTransaction(
        idempotency_key="k-1", account_id="acct-1", merchant_id="m-1",
        amount=Money(minor=1250, currency="EUR"), card_token="tok_abcdef123456",
    )  # fmt: skip
    first = start(payment_definition(), "saga-1", payment, 1712345678.1234567,
                  reply_to="amq.gen-1")  # fmt: skip
    event = SagaEvent(saga_id="saga-1", saga="payment", event="completed", status="completed")
    effects = (*first.effects, EmitEvent(event, final=True))
    entries = outbox_entries(Topology(), first.state, effects, KEYS.keyring("orchestrator"))
    commands = [e for e in entries if e.exchange == Topology().commands_exchange]
    assert len(commands) == 1
    deadline = commands[0].wire.headers[env.H_DEADLINE]
    assert deadline == binary32(deadline)  # as AMQP carries it: the signed value arrives
    assert deadline >= sends(first)[0].expires_at  # rounded up: never expires early
    assert any(e.routing_key == "amq.gen-1" for e in entries)  # the answer to reply_to
    for entry in entries:
        again = OutboxEntry.loads(entry.dumps()).wire
        assert KEYS.keyring("payment").verify(again) == "orchestrator"


# -- baton keys -------------------------------------------------------------------------------


def test_keys_generate_prints_usable_signing_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["keys", "generate", "orchestrator", "payment", "--json"])
    assert result.exit_code == 0, result.output
    files = json.loads(result.output)
    assert set(files) == {"orchestrator", "payment"}
    assert re.fullmatch(r"[0-9a-f]{8}", files["payment"]["key_id"])
    payment = Keyring.from_settings(SigningSettings.model_validate(files["payment"]), role="x")
    orchestrator = SigningSettings.model_validate(files["orchestrator"])
    assert Keyring.from_settings(orchestrator, role="x").verify(payment.sign(a_command()))
    path = tmp_path / "payment.json"
    path.write_text(json.dumps(files["payment"]))
    public = CliRunner().invoke(main, ["keys", "public", str(path)])
    assert json.loads(public.output) == {"payment": files["orchestrator"]["public_keys"]["payment"]}


def test_keys_generate_env_form() -> None:
    result = CliRunner().invoke(main, ["keys", "generate", "risk", "--env"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "# risk"
    assert {line.split("=", 1)[0] for line in lines[1:]} == {
        "BATON_SIGNING__SIGNER", "BATON_SIGNING__KEY_ID", "BATON_SIGNING__PRIVATE_KEY",
        "BATON_SIGNING__PUBLIC_KEYS", "BATON_SIGNING__UPSTREAMS",
    }  # fmt: skip
