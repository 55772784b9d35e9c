"""Stopping forward progress and undoing what may have applied, in reverse.

The undo plan is fixed when compensation begins, from recorded statuses: a compensatable
step that was sent and whose latest effect is not known to be absent (only a final refusal
says that). Stages are undone in reverse; within a parallel group, in reverse order of
completion, or all at once when the group says ``compensate: parallel`` (a *wave*).
"""

from __future__ import annotations

from math import inf

from contracts.envelope import Phase
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.engine.draft import Draft, pivot_started
from orchestrator.core.engine.sending import finish, try_send_command
from orchestrator.core.state import SagaState, SagaStatus, StepStatus, Waiting

# Statuses of a compensatable step that must be undone when the saga compensates.
TO_UNDO = (StepStatus.SUCCEEDED, StepStatus.UNKNOWN, StepStatus.RUNNING)


def send_command(d: Draft, step_name: str, phase: Phase, attempt: int) -> bool:
    """Send, or stop when the payload cannot be built (a definition or data bug)."""
    reason = try_send_command(d, step_name, phase, attempt)
    if reason is None:
        return True
    d.note("payload_error", step_name, phase, 0, reason)
    if phase == "forward" and not pivot_started(d.definition, d.state):
        d.set_step(step_name, status=StepStatus.REJECTED, error=reason)
        stop_forward(d, step_name, reason)
    else:
        finish(d, SagaStatus.FAILED, "failed", failed_step=step_name, reason=reason)
    return False


def interrupt(d: Draft, waiting: Waiting, reason: str) -> None:
    """Stop waiting on a forward step. Its effect may have applied unless the effect last
    sent was finally refused and its retry is not out yet."""
    refused = not waiting.sent and waiting.after_refusal
    status = StepStatus.REJECTED if refused else StepStatus.UNKNOWN
    d.set_step(waiting.step, status=status, error=reason, finished_at=d.now)
    d.drop_wait(waiting.step)


def stop_forward(d: Draft, failed_step: str, reason: str) -> None:
    """A step failed for good (or the saga was stopped): every other branch still in
    flight is interrupted, then whatever may have applied is compensated."""
    for waiting in d.state.waiting:
        if waiting.phase == "forward":
            interrupt(d, waiting, reason)
    begin_compensation(d, failed_step, reason)


def undo_plan(definition: SagaDefinition, state: SagaState) -> tuple[str, ...]:
    """Stages in reverse; within one, the latest to finish first (still unfinished: first)."""
    plan: list[str] = []
    for stage in reversed(definition.stages):
        candidates = [
            step.name
            for step in reversed(stage.steps)
            if step.kind == "compensatable" and state.steps[step.name].status in TO_UNDO
        ]
        finished = {name: state.steps[name].finished_at for name in candidates}
        candidates.sort(key=lambda name: -(finished[name] or inf))  # stable: ties keep order
        plan.extend(candidates)
    return tuple(plan)


def wave(definition: SagaDefinition, plan: tuple[str, ...], position: int) -> tuple[str, ...]:
    """The plan entries undone together from ``position``: one, or the run of entries of a
    group whose compensations may run in parallel."""
    stage = definition.stage_of(plan[position])
    if stage.compensate != "parallel":
        return (plan[position],)
    end = position
    while end < len(plan) and definition.stage_of(plan[end]) is stage:
        end += 1
    return plan[position:end]


def begin_compensation(d: Draft, failed_step: str, reason: str) -> None:
    """Fix the undo list from recorded statuses: a step that never started is never undone."""
    plan = undo_plan(d.definition, d.state)
    d.update(
        status=SagaStatus.COMPENSATING,
        compensation_plan=plan,
        failed_step=failed_step,
        reason=reason,
        waiting=(),
    )
    d.note("compensating", failed_step, detail=f"{reason}; undo {', '.join(plan) or 'nothing'}")
    start_wave(d, 0)


def start_wave(d: Draft, position: int) -> None:
    plan = d.state.compensation_plan
    if position >= len(plan):
        finish(d, SagaStatus.COMPENSATED, "compensated")
        return
    for name in wave(d.definition, plan, position):
        if not send_command(d, name, "compensate", 1):
            return


def first_unfinished_wave(d: Draft) -> tuple[str, ...]:
    """The plan's first wave with a step not yet undone (where an operator's retry resumes)."""
    plan = d.state.compensation_plan
    position = 0
    while position < len(plan):
        members = wave(d.definition, plan, position)
        if any(d.state.steps[name].status is not StepStatus.COMPENSATED for name in members):
            return members
        position += len(members)
    return ()


def settle_wave(d: Draft, step_name: str) -> None:
    """One compensation of a wave ended: once none is awaited, go on or stop for an operator."""
    plan = d.state.compensation_plan
    position = plan.index(step_name)
    while position > 0 and step_name in wave(d.definition, plan, position - 1):
        position -= 1
    members = wave(d.definition, plan, position)
    if any(d.wait_for(name) is not None for name in members):
        return
    failed = [n for n in members if d.state.steps[n].status is StepStatus.COMPENSATION_FAILED]
    if failed:
        error = d.state.steps[failed[0]].error or ""
        finish(
            d,
            SagaStatus.FAILED,
            "failed",
            failed_step=failed[0],
            reason=f"compensation failed: {error}",
        )
        return
    start_wave(d, position + len(members))


def compensated(d: Draft, step_name: str) -> None:
    d.set_step(step_name, status=StepStatus.COMPENSATED, error=None)
    d.drop_wait(step_name)
    settle_wave(d, step_name)


def compensation_given_up(d: Draft, step_name: str, reason: str) -> None:
    d.set_step(step_name, status=StepStatus.COMPENSATION_FAILED, error=reason)
    d.drop_wait(step_name)
    settle_wave(d, step_name)
