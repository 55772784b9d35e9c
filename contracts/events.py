"""Lifecycle events published on the events exchange for any subscriber."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from contracts.base import Contract

Lifecycle = Literal["started", "completed", "compensated", "failed"]


class SagaEvent(Contract):
    """A saga reached a lifecycle milestone (also the final reply sent to ``reply_to``)."""

    KIND: ClassVar[str] = "baton.saga_event.v1"
    saga_id: str
    saga: str
    event: Lifecycle
    status: str
    failed_step: str | None = None
    reason: str | None = None
    output: dict[str, object] = Field(default_factory=dict)
