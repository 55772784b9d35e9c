"""Retrying an attempt under its step's policy, or giving up when both budgets are spent.

A step gives up only when ``max_attempts`` *and* ``give_up_after_s`` are spent. A retriable
step, and a pivot whose outcome is unknown, are retried until answered: nothing at or after
the pivot is ever compensated, so its outcome must become known.
"""

from __future__ import annotations

from contracts.envelope import Phase
from orchestrator.core.definition import StepDefinition
from orchestrator.core.engine.compensation import compensation_given_up, stop_forward
from orchestrator.core.engine.draft import Draft, action_of, noteworthy, unit
from orchestrator.core.state import StepStatus, Waiting


def _unlimited(step: StepDefinition, phase: Phase, outcome_unknown: bool) -> bool:
    """A technical failure leaves the pivot's outcome as unknown as a timeout does: an
    earlier attempt of the same effect may still be in flight or may have applied."""
    if phase != "forward":
        return False
    return step.kind == "retriable" or (step.kind == "pivot" and outcome_unknown)


def next_generation(d: Draft, waiting: Waiting) -> None:
    """A final answer used up the current effect id: the next send gets a new one."""
    record = d.state.steps[waiting.step]
    if waiting.phase == "forward":
        d.set_step(waiting.step, generation=record.generation + 1)
    else:
        d.set_step(waiting.step, compensation_generation=record.compensation_generation + 1)


def _budget_spent(d: Draft, step: StepDefinition, waiting: Waiting) -> bool:
    """Both the attempt cap and the time budget of this step's phase are used up."""
    policy = action_of(step, waiting.phase).retry
    record = d.state.steps[waiting.step]
    if waiting.phase == "forward":
        used, since = waiting.attempt, record.started_at
    else:
        used = waiting.attempt - record.compensation_budget_from
        since = record.compensation_started_at
    return policy.spent(used, d.now - (d.now if since is None else since))


def _schedule(d: Draft, waiting: Waiting, reason: str, *, after_refusal: bool) -> None:
    policy = action_of(d.definition.step(waiting.step), waiting.phase).retry
    attempt = waiting.attempt + 1
    delay = policy.backoff_s(attempt, unit(d.state.saga_id, waiting.step, waiting.phase, attempt))
    d.put_wait(
        Waiting(
            step=waiting.step,
            phase=waiting.phase,
            attempt=attempt,
            sent=False,
            due=d.now + delay,
            after_refusal=after_refusal,
        )
    )
    if noteworthy(attempt):
        detail = f"{reason}; in {delay:.3f}s"
        d.note("retry_scheduled", waiting.step, waiting.phase, attempt, detail)


def retry_or_give_up(d: Draft, waiting: Waiting, reason: str, *, outcome_unknown: bool) -> None:
    """Schedule the next attempt, or give up when the policy's budgets are spent.

    ``outcome_unknown``: the last attempt may have applied (a timeout or a technical
    failure), as opposed to a final refusal of the effect.
    """
    step = d.definition.step(waiting.step)
    if _unlimited(step, waiting.phase, outcome_unknown) or not _budget_spent(d, step, waiting):
        _schedule(d, waiting, reason, after_refusal=not outcome_unknown)
        return
    if waiting.phase == "compensate":
        compensation_given_up(d, waiting.step, reason)
        return
    # A final refusal took no effect: nothing to undo. Anything else may have applied.
    status = StepStatus.UNKNOWN if outcome_unknown else StepStatus.REJECTED
    d.set_step(waiting.step, status=status, error=reason, finished_at=d.now)
    d.drop_wait(waiting.step)
    assert step.kind != "retriable", "a retriable step is retried without limit"
    stop_forward(d, step.name, reason)
