"""Building commands from the saga context, and finishing a saga with its lifecycle event."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from contracts.envelope import Phase
from contracts.events import Lifecycle, SagaEvent
from orchestrator.core.definition import Action, SagaDefinition
from orchestrator.core.effects import EmitEvent, SendCommand
from orchestrator.core.engine.draft import (
    Draft,
    action_of,
    command_ttl_s,
    context,
    effect_id,
    noteworthy,
)
from orchestrator.core.expressions import resolve
from orchestrator.core.state import SagaState, SagaStatus, StepRecord, StepStatus, Waiting


def build(definition: SagaDefinition, action: Action, state: SagaState) -> dict[str, Any]:
    """The command body from the saga context, validated against its contract."""
    found = context(state)
    raw = {field: resolve(found, path) for field, path in action.payload.items()}
    model = definition.contract(action.command)
    return model.model_validate(raw).model_dump(mode="json")


def why(exc: Exception) -> str:
    """What failed, never the values: a validation error's text quotes the input (a token)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors(include_input=False)[:5]
        )
    return str(exc)  # a missing key or a wrong type: names, not values


def try_send_command(d: Draft, step_name: str, phase: Phase, attempt: int) -> str | None:
    """Send one attempt of a step's command and wait for its reply; the reason, with the
    draft unchanged, when its payload cannot be built from the saga context."""
    step = d.definition.step(step_name)
    action = action_of(step, phase)
    try:
        body = build(d.definition, action, d.state)
    except (KeyError, TypeError, ValidationError) as exc:
        return f"invalid_payload: {why(exc)}"
    sid = d.state.saga_id
    record = d.state.steps[step_name]
    forward_id = effect_id(sid, step_name, "forward", record.generation)
    d.effects.append(
        SendCommand(
            participant=step.participant,
            step=step_name,
            phase=phase,
            attempt=attempt,
            effect_id=(
                forward_id
                if phase == "forward"
                else effect_id(sid, step_name, phase, record.compensation_generation)
            ),
            # the latest forward generation: earlier ones were refused, so took no effect
            compensates=forward_id if phase == "compensate" else "",
            kind=action.command,
            body=body,
            deadline=d.now + action.timeout_s,
            expires_at=d.now + command_ttl_s(action.timeout_s),
        )
    )
    _mark_sent(d, step_name, phase, attempt, record)
    d.put_wait(
        Waiting(
            step=step_name, phase=phase, attempt=attempt, sent=True, due=d.now + action.timeout_s
        )
    )
    if noteworthy(attempt):
        d.note("sent", step_name, phase, attempt, action.command)
    return None


def _mark_sent(d: Draft, step_name: str, phase: Phase, attempt: int, record: StepRecord) -> None:
    """The step's record once an attempt of its command is sent: running or compensating."""
    if phase == "forward":
        d.set_step(
            step_name,
            status=StepStatus.RUNNING,
            attempts=attempt,
            started_at=record.started_at or d.now,
        )
    else:
        d.set_step(
            step_name,
            status=StepStatus.COMPENSATING,
            compensation_attempts=attempt,
            compensation_started_at=record.compensation_started_at or d.now,
        )


def _output(definition: SagaDefinition, state: SagaState) -> dict[str, object]:
    found_context = context(state)
    found: dict[str, object] = {}
    for name, path in definition.output.items():
        try:
            found[name] = resolve(found_context, path)
        except (KeyError, TypeError):
            continue  # a step that never ran has no output to report
    return found


def describe(definition: SagaDefinition, state: SagaState, event: Lifecycle) -> SagaEvent:
    """The lifecycle event that tells a subscriber or a caller where the saga stands."""
    return SagaEvent(
        saga_id=state.saga_id,
        saga=state.saga,
        event=event,
        status=state.status.value,
        failed_step=state.failed_step,
        reason=state.reason,
        output=_output(definition, state) if state.status is SagaStatus.COMPLETED else {},
        idempotency_key=state.idempotency_key,
    )


def emit(d: Draft, event: Lifecycle, *, final: bool) -> None:
    d.effects.append(EmitEvent(describe(d.definition, d.state, event), final=final))


def finish(d: Draft, status: SagaStatus, event: Lifecycle, **changes: Any) -> None:
    """End the saga: nothing is awaited any more, and subscribers hear the outcome."""
    d.update(status=status, waiting=(), **changes)
    d.note(event, detail=d.state.reason or "")
    emit(d, event, final=True)
