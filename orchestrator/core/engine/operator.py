"""An operator's retry, resume and abort: recorded in the history whether or not they act."""

from __future__ import annotations

import json

from orchestrator.core.effects import Decision, OperatorAction
from orchestrator.core.engine.compensation import (
    begin_compensation,
    first_unfinished_wave,
    interrupt,
    send_command,
)
from orchestrator.core.engine.draft import Draft, pivot_started
from orchestrator.core.engine.sending import finish
from orchestrator.core.state import SagaStatus, StepStatus

# Step statuses that say nothing is held: never sent, skipped, finally refused, or undone.
_NOTHING_HELD = (
    StepStatus.PENDING,
    StepStatus.SKIPPED,
    StepStatus.REJECTED,
    StepStatus.COMPENSATED,
)


def on_operator(d: Draft, action: OperatorAction) -> Decision:
    state = d.state
    d.note(f"operator_{action.action}", detail=_detail(action))
    if state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
        return Decision(state, ignored="saga_finished")
    if action.action == "abort":
        return _abort(d, action)
    if state.status is SagaStatus.FAILED:
        return _retry_compensation(d, action)
    if not state.waiting:
        return Decision(state, ignored="nothing_to_resume")
    for waiting in state.waiting:  # send each again now, as a new attempt
        if not send_command(d, waiting.step, waiting.phase, waiting.attempt + 1):
            break
    return d.decision()


def _detail(action: OperatorAction) -> str:
    """Who and why, structured: a compact JSON object (``baton audit`` holds the chain)."""
    fields = {"actor": action.actor, "reason": action.reason}
    if action.batch_id:
        fields["batch_id"] = action.batch_id
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _retry_compensation(d: Draft, action: OperatorAction) -> Decision:
    """Resume the plan at its first wave not yet undone. That is not always failed_step: an
    abort without compensation leaves failed_step naming the forward step that failed."""
    members = first_unfinished_wave(d)
    if action.action != "retry" or not members:
        return Decision(d.state, ignored="nothing_to_retry")
    d.update(status=SagaStatus.COMPENSATING)
    for name in members:
        record = d.state.steps[name]
        if record.status is StepStatus.COMPENSATED:
            continue
        # A fresh compensation budget, in attempts and time, from where it ran out.
        d.set_step(
            name,
            compensation_budget_from=record.compensation_attempts,
            compensation_started_at=d.now,
        )
        if not send_command(d, name, "compensate", record.compensation_attempts + 1):
            break
    return d.decision()


def _abort(d: Draft, action: OperatorAction) -> Decision:
    state = d.state
    if not action.compensate and state.status is SagaStatus.FAILED:
        return Decision(state, ignored="already_failed")
    if not action.compensate and any(
        record.status not in _NOTHING_HELD for record in state.steps.values()
    ):
        # Ending the saga now would strand whatever those steps hold (a hold on an account):
        # only an abort that compensates may end it.
        return Decision(state, ignored="may_hold_effects")
    if not action.compensate:
        finish(d, SagaStatus.FAILED, "failed", reason=f"aborted by {action.actor}")
        return d.decision()
    if state.status is not SagaStatus.RUNNING or pivot_started(d.definition, state):
        return Decision(state, ignored="cannot_compensate_now")
    first = state.waiting[0].step if state.waiting else ""
    for waiting in state.waiting:
        interrupt(d, waiting, "aborted")
    begin_compensation(d, first, f"aborted by {action.actor}")
    return d.decision()
