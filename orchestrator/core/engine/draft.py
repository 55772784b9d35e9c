"""The decision being built, and the pure helpers every part of the engine shares.

No I/O, no clock, no randomness: time comes in as ``now`` and retry jitter is a hash of the
saga id, step and attempt, so the same inputs always give the same decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from contracts.envelope import Phase
from contracts.pan import mask_pans
from orchestrator.core.definition import Action, SagaDefinition, StepDefinition
from orchestrator.core.effects import Decision, Effect, HistoryEntry
from orchestrator.core.state import SagaState, SagaStatus, StepStatus, Waiting

COMMAND_TTL_TIMEOUTS = 4
MIN_COMMAND_TTL_S = 30.0


def effect_id(saga_id: str, step: str, phase: Phase, generation: int = 0) -> str:
    """Stable across retries of one effect; a new generation after a final answer.

    Generation 0 keeps the first release's derivation, so sagas in flight keep their ids.
    """
    suffix = f"|{generation}" if generation else ""
    return hashlib.sha256(f"{saga_id}|{step}|{phase}{suffix}".encode()).hexdigest()[:32]


def command_message_id(effect_id: str, attempt: int) -> str:
    """A command's message id: unique per send, and derivable from the saga's state."""
    return f"{effect_id}.{attempt}"


def waited_command(state: SagaState, waiting: Waiting) -> str:
    """The message id of the command ``waiting`` waits on a reply to."""
    record = state.steps[waiting.step]
    generation = record.generation if waiting.phase == "forward" else record.compensation_generation
    return command_message_id(
        effect_id(state.saga_id, waiting.step, waiting.phase, generation), waiting.attempt
    )


def timed_out_commands(state: SagaState, now: float) -> tuple[str, ...]:
    """The message ids of the sent commands whose timeouts a tick at ``now`` would judge.

    The runner asks the outbox which are still there: those never left, and the tick says
    so (``Tick.unpublished``) instead of spending an attempt.
    """
    if state.status.is_finished:
        return ()
    return tuple(waited_command(state, w) for w in state.waiting if w.sent and now >= w.due)


def command_ttl_s(timeout_s: float) -> float:
    """How long a sent command stays worth handling: ``max(4 x timeout, 30 s)``.

    Not the reply timeout: a command that waited in a backlog longer than that is still the
    one the engine wants, and dropping it would only queue its retry behind the same backlog
    (a congestion collapse the fault suite provoked). Past this a newer attempt of the same
    effect is queued behind it, and the participant drops it at the cost of one read.
    """
    return max(COMMAND_TTL_TIMEOUTS * timeout_s, MIN_COMMAND_TTL_S)


def noteworthy(attempt: int) -> bool:
    """Whether an attempt's routine entries (sent, timed out, retry) go into the history:
    the first four, then powers of two, so an hour-long outage adds a dozen lines, not
    thousands."""
    return attempt <= 4 or attempt & (attempt - 1) == 0


def unit(saga_id: str, step: str, phase: str, attempt: int) -> float:
    """A deterministic number in [0, 1) that spreads retries of different sagas apart."""
    digest = hashlib.sha256(f"{saga_id}|{step}|{phase}|{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def action_of(step: StepDefinition, phase: Phase) -> Action:
    if phase == "forward":
        return step.action
    assert step.compensation is not None  # only compensatable steps are compensated
    return step.compensation


def context(state: SagaState) -> dict[str, Any]:
    """What payload paths and conditions read: the saga id, its input, each step's output."""
    return {
        "saga": {"id": state.saga_id},
        "input": state.input,
        "steps": {name: record.output for name, record in state.steps.items()},
    }


def pivot_started(definition: SagaDefinition, state: SagaState) -> bool:
    """Past the point of no return: nothing before the pivot is compensated any more."""
    return any(
        state.steps[step.name].status not in (StepStatus.PENDING, StepStatus.SKIPPED)
        for step in definition.steps
        if step.kind == "pivot"
    )


def wake_at(definition: SagaDefinition, state: SagaState) -> float | None:
    times = [w.due for w in state.waiting]
    if (
        state.status is SagaStatus.RUNNING
        and state.deadline is not None
        and not pivot_started(definition, state)
    ):
        times.append(state.deadline)
    return min(times) if times else None


class Draft:
    """The decision being built: the state so far plus what to send and record."""

    def __init__(self, definition: SagaDefinition, state: SagaState, now: float) -> None:
        self.definition = definition
        self.state = state.model_copy(update={"updated_at": now})
        self.now = now
        self.effects: list[Effect] = []
        self.history: list[HistoryEntry] = []

    def update(self, **changes: Any) -> None:
        self.state = self.state.model_copy(update=changes)

    def set_step(self, name: str, **changes: Any) -> None:
        steps = dict(self.state.steps)
        steps[name] = steps[name].model_copy(update=changes)
        self.update(steps=steps)

    def wait_for(self, step: str) -> Waiting | None:
        """What the saga waits for from ``step`` (a step waits for one thing at a time)."""
        return next((w for w in self.state.waiting if w.step == step), None)

    def put_wait(self, waiting: Waiting) -> None:
        others = tuple(w for w in self.state.waiting if w.step != waiting.step)
        self.update(waiting=(*others, waiting))

    def drop_wait(self, step: str) -> None:
        self.update(waiting=tuple(w for w in self.state.waiting if w.step != step))

    def is_current(self, waiting: Waiting) -> bool:
        """Whether ``waiting`` is still awaited unchanged (an earlier part of this decision
        may have stopped or replaced it)."""
        return waiting in self.state.waiting

    def note(
        self, what: str, step: str = "", phase: str = "", attempt: int = 0, detail: str = ""
    ) -> None:
        # History is kept in clear for the retention: no card number, whatever the source
        # (a refusal reason, an operator's note).
        entry = HistoryEntry(self.now, what, step, phase, attempt, mask_pans(detail)[:500])
        self.history.append(entry)

    def statuses(self, names: Iterable[str]) -> list[StepStatus]:
        return [self.state.steps[name].status for name in names]

    def decision(self) -> Decision:
        wake = wake_at(self.definition, self.state)
        return Decision(
            self.state.model_copy(update={"wake_at": wake}),
            tuple(self.effects),
            tuple(self.history),
        )
