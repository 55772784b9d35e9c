"""A saga's recorded state: what the engine reads and writes, and what the store persists."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from contracts.envelope import Phase


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"  # compensation could not finish: waits for an operator

    @property
    def is_finished(self) -> bool:
        """Nothing more will happen without an operator."""
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED)

    @property
    def expires(self) -> bool:
        """Kept only for the retention period. A failed saga stays until an operator acts."""
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)


class StepStatus(StrEnum):
    PENDING = "pending"  # never sent: never compensated
    SKIPPED = "skipped"  # its condition did not hold: never sent
    RUNNING = "running"  # sent, no final answer yet: may have applied
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"  # final business refusal of its latest effect: nothing to undo
    UNKNOWN = "unknown"  # timed out or kept failing technically: compensated to be safe
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class StepRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0  # forward attempts sent
    compensation_attempts: int = 0
    # Compensation attempts made before the current budget: an operator retry restarts the
    # budget without reusing attempt numbers (stale-reply detection depends on them).
    compensation_budget_from: int = 0
    # Effect generations (docs/protocol.md): a business answer is final for its effect id, so
    # what is sent after one goes out under the next generation, i.e. a new effect id.
    generation: int = 0
    compensation_generation: int = 0
    compensation_started_at: float | None = None  # start of the compensation's time budget
    output: dict[str, Any] = {}
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


class Waiting(BaseModel):
    """The one thing a saga waits for: a reply to ``attempt`` (sent) or the time to send it."""

    model_config = ConfigDict(frozen=True)

    step: str
    phase: Phase
    attempt: int
    sent: bool
    due: float  # reply timeout when sent; retry time when not
    # The scheduled send follows a final refusal: the effect last sent took no effect.
    after_refusal: bool = False


class SagaState(BaseModel):
    model_config = ConfigDict(frozen=True)

    saga_id: str
    saga: str
    definition_version: int
    status: SagaStatus = SagaStatus.RUNNING
    version: int = 0  # the store's optimistic-concurrency counter
    input: dict[str, Any]
    steps: dict[str, StepRecord]
    # What the saga waits for: one entry per step in flight (several in a parallel group).
    waiting: tuple[Waiting, ...] = ()
    compensation_plan: tuple[str, ...] = ()  # fixed when compensation begins, in undo order
    deadline: float | None = None
    started_at: float
    updated_at: float
    failed_step: str | None = None
    reason: str | None = None
    idempotency_key: str = ""
    reply_to: str = ""
    traceparent: str = ""
    wake_at: float | None = None  # when the deadline loop must look again; None: only a reply

    @field_validator("waiting", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """States stored before parallel groups held one ``Waiting`` or null."""
        if value is None:
            return ()
        if isinstance(value, dict | Waiting):
            return (value,)
        return value
