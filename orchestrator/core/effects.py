"""What goes into and comes out of the pure engine: events, effects and the decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from contracts.envelope import Phase
from contracts.events import SagaEvent
from orchestrator.core.state import SagaState

# -- events: what happened ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """A participant answered. ``failure`` is set for a StepFailed body.

    ``sender`` is the verified signer of the reply: only the participant the step names may
    answer it (anything else is ignored as ``wrong_sender``).
    """

    step: str
    phase: Phase
    attempt: int
    kind: str
    body: dict[str, Any]
    failure_reason: str | None = None
    retriable: bool = False
    sender: str = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Tick:
    """The deadline loop saw ``wake_at`` pass: a timeout, a retry due or the saga deadline.

    ``unpublished``: the message ids of awaited commands still in the outbox (the broker was
    away), whose timeouts say nothing about the participant: those attempts do not count.
    """

    unpublished: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """An operator's command, recorded in the saga's history (actor, reason and the bulk
    run's ``batch_id`` as a JSON object in the entry's detail)."""

    action: Literal["retry", "resume", "abort"]
    compensate: bool = True
    actor: str = "operator"
    reason: str = ""
    batch_id: str = ""


Event = ReplyReceived | Tick | OperatorAction

# -- effects: what must happen next -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendCommand:
    participant: str
    step: str
    phase: Phase
    attempt: int
    effect_id: str
    compensates: str
    kind: str
    body: dict[str, Any]
    deadline: float  # when the engine stops waiting for this attempt's reply
    expires_at: float  # when a participant drops it unhandled (x-baton-deadline)


@dataclass(frozen=True, slots=True)
class EmitEvent:
    """A lifecycle event; ``final`` ones also answer the start message's ``reply_to``."""

    event: SagaEvent
    final: bool = False


Effect = SendCommand | EmitEvent


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a saga's timeline."""

    at: float
    what: str
    step: str = ""
    phase: str = ""
    attempt: int = 0
    detail: str = ""

    def fields(self) -> dict[str, str]:
        return {
            "at": f"{self.at:.6f}",
            "what": self.what,
            "step": self.step,
            "phase": self.phase,
            "attempt": str(self.attempt),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer: the next state, what to send, and what to record.

    ``ignored`` names why an event changed nothing (stale, duplicate, late); the caller
    then writes nothing.
    """

    state: SagaState
    effects: tuple[Effect, ...] = ()
    history: tuple[HistoryEntry, ...] = field(default_factory=tuple)
    ignored: str | None = None
