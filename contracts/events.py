"""Lifecycle events published on the events exchange for any subscriber."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from contracts.base import Contract

Lifecycle = Literal["started", "completed", "compensated", "failed", "duplicate", "rejected"]


class SagaEvent(Contract):
    """A saga reached a lifecycle milestone (also the final reply sent to ``reply_to``).

    ``duplicate`` answers a start whose idempotency key names an existing saga, with that
    saga's current ``status``; ``rejected`` answers a start that started nothing (invalid,
    or a reused key with another payload), with the ``reason``.
    """

    KIND: ClassVar[str] = "baton.saga_event.v1"
    saga_id: str
    saga: str
    event: Lifecycle
    status: str
    failed_step: str | None = None
    reason: str | None = None
    output: dict[str, object] = Field(default_factory=dict)
    idempotency_key: str = ""
