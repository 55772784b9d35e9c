"""The document's header schemas say what docs/protocol.md's "Headers" table says, and accept
the headers Baton really sends."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft7Validator

from baton.asyncapi.headers import HEADER_ROLES, HEADER_TYPES, header_names, headers_schema
from contracts import envelope as env
from messaging.transport.codec import encode
from messaging.trust.signing import KeySet
from participants.payments.contracts import AuthorizePayment
from tests.support.asyncapi import ROOT

SIGNATURE = "A" * 86  # the shape of a base64url Ed25519 signature


def protocol_table() -> dict[str, tuple[str, str]]:
    """{header: (commands cell, replies cell)} from the page's "Headers" table."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("### Headers", 1)[1].split("\n#", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z-]+)`", cells[0]) if len(cells) >= 3 else None
        if match:
            rows[match.group(1)] = (cells[1], cells[2])
    return rows


def status(cell: str) -> str:
    """What a table cell says: required, optional, absent, conditional or n/a."""
    if cell.startswith("compensations: required"):
        return "conditional"
    if cell.startswith(("required", "integer `1`", "`orchestrator`")) or cell == "set":
        return "required"
    if cell in ("optional", "copied"):
        return "optional"
    if cell == "absent":
        return "absent"
    assert cell == "—", cell
    return "n/a"


def schema_status(role: str, header: str) -> str:
    required, optional, absent = header_names(role)  # type: ignore[arg-type]
    schema = headers_schema(role)  # type: ignore[arg-type]
    if header in schema.get("then", {}).get("required", []):
        return "conditional"
    if header in required:
        return "required"
    if header in optional:
        return "optional"
    return "absent" if header in absent else "n/a"


def test_every_header_of_the_envelope_is_described() -> None:
    names = {getattr(env, n) for n in dir(env) if n.startswith("H_")}
    assert set(HEADER_TYPES) == names
    used = {h for role in HEADER_ROLES for names_ in header_names(role) for h in names_}
    assert used == names


def test_the_schemas_follow_the_protocol_table() -> None:
    table = protocol_table()
    assert set(table) == set(HEADER_TYPES)
    for header, (commands, replies) in table.items():
        assert schema_status("command", header) == status(commands), header
        assert schema_status("reply", header) == status(replies), header


def _signed(headers: dict[str, Any], signer: str) -> dict[str, Any]:
    return {**headers, env.H_SIGNER: signer, env.H_KEY_ID: "k1", env.H_SIGNATURE: SIGNATURE}


@pytest.fixture(scope="module")
def command() -> dict[str, Any]:
    envelope = env.Envelope(
        kind=AuthorizePayment.KIND, saga_id="s-1", saga="payment", step="authorize_payment",
        effect_id="e" * 32, attempt=1, deadline=1712345728.0,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )  # fmt: skip
    body = AuthorizePayment.model_validate(
        {"account_id": "acct-1", "amount": {"minor": 1250, "currency": "EUR"}}
    )
    wire = encode(envelope, body)
    keyring = KeySet.generate(("orchestrator",)).keyring("orchestrator")
    return dict(keyring.sign(wire).headers)


def test_what_baton_sends_is_valid(command: dict[str, Any]) -> None:
    Draft7Validator(headers_schema("command")).validate(command)
    reply = {k: v for k, v in command.items() if k != env.H_DEADLINE}
    Draft7Validator(headers_schema("reply")).validate(_signed(reply, "payment"))
    dead = {**command, env.H_REASON: "unknown_type: x", env.H_SOURCE_QUEUE: "baton.cmd.payment"}
    Draft7Validator(headers_schema("dead_letter")).validate(dead)
    # a start as `baton start` sends it: the saga is not known yet, the send time is
    start = env.Envelope(kind="payments.start_transaction.v1", saga_id="-", sent_at=1712345678)
    Draft7Validator(headers_schema("start")).validate(_signed(start.headers(), "cli"))
    event = env.Envelope(kind="baton.saga_event.v1", saga_id="s-1", saga="payment")
    Draft7Validator(headers_schema("event")).validate(_signed(event.headers(), "orchestrator"))


def test_what_the_protocol_forbids_is_invalid(command: dict[str, Any]) -> None:
    def invalid(role: str, headers: dict[str, Any]) -> bool:
        return not Draft7Validator(headers_schema(role)).is_valid(headers)  # type: ignore[arg-type]

    assert invalid("command", {**command, env.H_PHASE: "compensate"})  # no x-baton-compensates
    assert invalid("command", {**command, env.H_COMPENSATES: "f" * 32})  # forward: absent
    assert not invalid(
        "command", {**command, env.H_PHASE: "compensate", env.H_COMPENSATES: "f" * 32}
    )
    assert invalid("command", _signed(command, "payment"))  # only the orchestrator commands
    assert invalid("reply", _signed(command, "payment"))  # a reply has no deadline
    assert invalid("command", {**command, env.H_SCHEMA: 2})
    assert invalid("command", {**command, env.H_ATTEMPT: -1})
    assert invalid("command", {k: v for k, v in command.items() if k != env.H_SIGNATURE})
    assert invalid("start", {})  # a start is signed too
