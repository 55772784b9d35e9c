"""The metadata that travels with every message as AMQP properties and headers."""

from __future__ import annotations

from typing import Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
Phase = Literal["forward", "compensate"]

# Header names: the wire format, spelled here and nowhere else.
H_SAGA_ID = "x-baton-saga-id"
H_SAGA = "x-baton-saga"
H_STEP = "x-baton-step"
H_PHASE = "x-baton-phase"
H_EFFECT_ID = "x-baton-effect-id"
H_COMPENSATES = "x-baton-compensates"
H_ATTEMPT = "x-baton-attempt"
H_SCHEMA = "x-baton-schema"
H_DEADLINE = "x-baton-deadline"
H_SENT_AT = "x-baton-sent-at"
H_TRACEPARENT = "traceparent"
H_REASON = "x-baton-reason"
H_SOURCE_QUEUE = "x-baton-source-queue"
# Signatures (messaging/trust/signing.py, docs/protocol.md "Signatures"): who signed, with
# which key.
H_SIGNER = "x-baton-signer"
H_KEY_ID = "x-baton-key-id"
H_SIGNATURE = "x-baton-signature"
H_SEALED = "x-baton-sealed"  # a dead letter's body is sealed; the value is the key id


def new_message_id() -> str:
    return uuid4().hex


class Envelope(BaseModel):
    """Who a message is for and where it sits in a saga; the body is a separate Contract.

    ``effect_id`` is stable across retries of one step and phase (participants
    deduplicate on it); ``attempt`` changes on every retry (stale replies are recognised
    by it); ``compensates`` names the forward effect a compensation undoes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(min_length=1, max_length=200)
    message_id: str = Field(default_factory=new_message_id, min_length=1, max_length=200)
    saga_id: str = Field(min_length=1, max_length=200)
    saga: str = Field(default="", max_length=200)
    step: str = Field(default="", max_length=200)
    phase: Phase = "forward"
    effect_id: str = Field(default="", max_length=200)
    compensates: str = Field(default="", max_length=200)
    attempt: int = Field(default=0, ge=0)
    schema_version: int = SCHEMA_VERSION
    deadline: float | None = None
    # starts: when the caller sent it, whole epoch seconds (AMQP float headers are 32-bit)
    sent_at: int | None = None
    traceparent: str = Field(default="", max_length=55)
    reply_to: str = Field(default="", max_length=255)

    def headers(self) -> dict[str, str | int | float]:
        """The AMQP headers for this envelope (properties are set by the transport)."""
        headers: dict[str, str | int | float] = {
            H_SAGA_ID: self.saga_id,
            H_SAGA: self.saga,
            H_STEP: self.step,
            H_PHASE: self.phase,
            H_EFFECT_ID: self.effect_id,
            H_ATTEMPT: self.attempt,
            H_SCHEMA: self.schema_version,
        }
        if self.compensates:
            headers[H_COMPENSATES] = self.compensates
        if self.deadline is not None:
            headers[H_DEADLINE] = self.deadline
        if self.sent_at is not None:
            headers[H_SENT_AT] = self.sent_at
        if self.traceparent:
            headers[H_TRACEPARENT] = self.traceparent
        return headers

    def reply(self, kind: str) -> Envelope:
        """The envelope of the answer to this message: same saga position, new message id."""
        return self.model_copy(
            update={
                "kind": kind,
                "message_id": new_message_id(),
                "reply_to": "",
                "deadline": None,
                "sent_at": None,
            }
        )
