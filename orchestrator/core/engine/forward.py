"""Moving forward: starting a saga, entering stages (a step or a parallel group, each
possibly conditional), and the answers to forward commands."""

from __future__ import annotations

from contracts.base import Start
from contracts.traceparent import trace_id
from orchestrator.core.definition import SagaDefinition, StepDefinition
from orchestrator.core.effects import Decision, ReplyReceived
from orchestrator.core.engine.compensation import send_command, stop_forward
from orchestrator.core.engine.draft import Draft, context
from orchestrator.core.engine.sending import emit, finish
from orchestrator.core.state import SagaState, SagaStatus, StepRecord, StepStatus, Waiting

_DONE = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)


def start(
    definition: SagaDefinition,
    saga_id: str,
    message: Start,
    now: float,
    *,
    reply_to: str = "",
    traceparent: str = "",
) -> Decision:
    """The first decision of a new saga: record it and send its first stage's commands."""
    state = SagaState(
        saga_id=saga_id,
        saga=definition.name,
        definition_version=definition.version,
        input=message.model_dump(mode="json"),
        steps={step.name: StepRecord() for step in definition.steps},
        deadline=now + definition.deadline_s if definition.deadline_s else None,
        started_at=now,
        updated_at=now,
        idempotency_key=message.idempotency_key,
        reply_to=reply_to,
        traceparent=traceparent,
    )
    d = Draft(definition, state, now)
    trace = trace_id(traceparent)  # in the timeline, to find the saga's trace and log lines
    d.note(
        "started",
        detail=f"{definition.name} v{definition.version}" + (f"; trace {trace}" if trace else ""),
    )
    emit(d, "started", final=False)
    enter_stage(d, 0)
    return d.decision()


def _runs(d: Draft, step: StepDefinition) -> bool:
    return step.when is None or step.when.evaluate(context(d.state))


def enter_stage(d: Draft, index: int) -> None:
    """Send every step of the first stage from ``index`` whose condition holds, skipping
    stages and steps whose condition does not; complete when no stage is left."""
    stages = d.definition.stages
    while index < len(stages):
        stage = stages[index]
        group_runs = stage.when is None or stage.when.evaluate(context(d.state))
        running = [step for step in stage.steps if group_runs and _runs(d, step)]
        for step in stage.steps:
            if step not in running:
                d.set_step(step.name, status=StepStatus.SKIPPED)
                d.note("skipped", step.name)
        for step in running:
            if not send_command(d, step.name, "forward", 1):
                return  # the saga stopped moving forward
        if running:
            return
        index += 1
    finish(d, SagaStatus.COMPLETED, "completed")


def succeeded(d: Draft, step: StepDefinition, reply: ReplyReceived) -> None:
    """A forward step succeeded: once its whole stage has, the next stage begins."""
    d.set_step(
        step.name, status=StepStatus.SUCCEEDED, output=reply.body, error=None, finished_at=d.now
    )
    d.drop_wait(step.name)
    index = d.definition.stage_index(step.name)
    members = [s.name for s in d.definition.stages[index].steps]
    if all(status in _DONE for status in d.statuses(members)):
        enter_stage(d, index + 1)


def rejected(d: Draft, step: StepDefinition, waiting: Waiting, reason: str) -> None:
    """A final business refusal of a forward step: nothing of it to undo."""
    d.set_step(step.name, status=StepStatus.REJECTED, error=reason, finished_at=d.now)
    d.drop_wait(step.name)
    if step.kind == "retriable":
        # Definitions put no business failure after the pivot; if one happens anyway the
        # money has moved and only a person can decide what to do.
        reason = f"rejected after pivot: {reason}"
        finish(d, SagaStatus.FAILED, "failed", failed_step=step.name, reason=reason)
        return
    stop_forward(d, step.name, reason)
