"""Bytes and AMQP properties to (Envelope, Contract) and back; every failure is a ContractError."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from contracts import envelope as env
from contracts.base import Contract
from contracts.envelope import SCHEMA_VERSION, Envelope
from messaging.errors import ContractError

if TYPE_CHECKING:  # contracts.registry imports messaging.errors: no import cycle at run time
    from contracts.registry import ContractLookup

MAX_BODY_BYTES = 256 * 1024
CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Wire:
    """A message as the broker sees it, free of any client library's types."""

    body: bytes
    kind: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = CONTENT_TYPE
    reply_to: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    # Where the message held bytes that were not text ("property type", "header x-baton-step"):
    # such a message is refused as undecodable before anything else is read from it.
    undecodable: tuple[str, ...] = ()


def encode(envelope: Envelope, body: Contract) -> Wire:
    """The wire form of one message; the envelope's kind must be the body's."""
    return Wire(
        body=body.model_dump_json().encode(),
        kind=envelope.kind,
        message_id=envelope.message_id,
        correlation_id=envelope.saga_id,
        reply_to=envelope.reply_to or None,
        headers=envelope.headers(),
    )


def _header_text(headers: Mapping[str, Any], name: str) -> str:
    """A header Baton writes as text. AMQP allows any type there: only text-like ones pass."""
    value = headers.get(name)
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            raise ContractError("undecodable_header", name) from None
    if isinstance(value, str | int | float | Decimal):  # bool is an int
        return str(value)
    raise ContractError("invalid_headers", f"{name}: {type(value).__name__}, not text")


def _envelope(wire: Wire, *, require_saga: bool) -> Envelope:
    headers = wire.headers or {}
    saga_id = _header_text(headers, env.H_SAGA_ID) or (wire.correlation_id or "")
    if require_saga and not saga_id:
        raise ContractError("missing_header", env.H_SAGA_ID)
    schema = headers.get(env.H_SCHEMA, SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise ContractError("unsupported_schema", str(schema))
    try:
        return Envelope(
            kind=wire.kind or "",
            message_id=wire.message_id or env.new_message_id(),
            saga_id=saga_id or "-",
            saga=_header_text(headers, env.H_SAGA),
            step=_header_text(headers, env.H_STEP),
            phase=_header_text(headers, env.H_PHASE) or "forward",
            effect_id=_header_text(headers, env.H_EFFECT_ID),
            compensates=_header_text(headers, env.H_COMPENSATES),
            attempt=headers.get(env.H_ATTEMPT, 0),
            deadline=headers.get(env.H_DEADLINE),
            sent_at=headers.get(env.H_SENT_AT),
            traceparent=_header_text(headers, env.H_TRACEPARENT),
            reply_to=wire.reply_to or "",
        )
    except ValidationError as exc:
        raise ContractError("invalid_headers", _summary(exc)) from exc


def _undecodable(places: tuple[str, ...]) -> ContractError:
    """``undecodable_property`` when a property was not text, else ``undecodable_header``."""
    kind = "property" if any(p.startswith("property ") for p in places) else "header"
    return ContractError(f"undecodable_{kind}", ", ".join(places)[:300])


def _summary(exc: ValidationError) -> str:
    """A short, payload-free description of what failed validation."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5]
    )


def decode(
    wire: Wire, contracts: ContractLookup, *, require_saga: bool = True
) -> tuple[Envelope, Contract]:
    """Validate headers and body against the model ``contracts`` holds for the message's kind
    (a ``ContractRegistry``). Raises ContractError with a short reason code."""
    if wire.undecodable:
        raise _undecodable(wire.undecodable)
    if len(wire.body) > MAX_BODY_BYTES:
        raise ContractError("body_too_large", f"{len(wire.body)} bytes")
    if wire.content_type not in (None, "", CONTENT_TYPE):
        raise ContractError("wrong_content_type", str(wire.content_type))
    if not wire.kind:
        raise ContractError("missing_type", "the AMQP type property names the contract")
    model = contracts.get(wire.kind)
    if model is None:
        raise ContractError("unknown_type", wire.kind[:200])
    envelope = _envelope(wire, require_saga=require_saga)
    try:
        body = model.model_validate_json(wire.body)
    except ValidationError as exc:
        reason = (
            "not_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "invalid_body"
        )
        raise ContractError(reason, _summary(exc)) from exc
    return envelope, body


def require_headers(wire: Wire, names: tuple[str, ...]) -> None:
    """Refuse a message that lacks a header its role needs (a reply without its step, phase
    or attempt cannot be matched to what a saga waits for: dead-lettered, never dropped)."""
    headers = wire.headers or {}
    for name in names:
        if headers.get(name) in (None, ""):
            raise ContractError("missing_header", name)
