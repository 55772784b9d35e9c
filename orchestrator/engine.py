"""The pure saga engine: ``decide(definition, state, event, now) -> Decision``.

No I/O, no clock, no randomness: time comes in as ``now`` and retry jitter is a hash of
the saga id, step and attempt, so the same inputs always give the same decision.

Rules (design.md §5):
- A reply counts only if it answers what the saga waits for, at the current attempt.
- Before the pivot a failed or timed-out step is retried under its policy (attempts *and*
  time), then the saga compensates every compensatable step that was sent and whose latest
  effect is not known to be absent, in reverse.
- The pivot is retried without limit on timeouts: its outcome must become known, because
  nothing at or after it is ever compensated. Retriable steps are retried until they succeed.
- A compensation is retried under its own policy; when that runs out the saga is ``failed``
  and waits for an operator.
- One outcome per effect id (docs/protocol.md): a timeout or a technical failure is retried
  under the same effect id; after a business answer, whatever is sent for the same step and
  phase goes out under the next generation's effect id.
- History stays bounded: repeated retries of one step are noted on a log scale.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from contracts.base import Start
from contracts.envelope import Phase
from contracts.events import Lifecycle, SagaEvent
from contracts.pan import mask_pans
from contracts.registry import contract_for
from messaging.tracing import trace_id
from orchestrator.definition import Action, SagaDefinition, StepDefinition
from orchestrator.effects import (
    Decision,
    Effect,
    EmitEvent,
    Event,
    HistoryEntry,
    OperatorAction,
    ReplyReceived,
    SendCommand,
    Tick,
)
from orchestrator.state import SagaState, SagaStatus, StepRecord, StepStatus, Waiting

COMMAND_TTL_TIMEOUTS = 4
MIN_COMMAND_TTL_S = 30.0

# Statuses of a compensatable step that must be undone when the saga compensates: it was
# sent and its latest effect is not known to be absent (only a final refusal says that).
_TO_UNDO = (StepStatus.SUCCEEDED, StepStatus.UNKNOWN, StepStatus.RUNNING)


def effect_id(saga_id: str, step: str, phase: Phase, generation: int = 0) -> str:
    """Stable across retries of one effect; a new generation after a final answer.

    Generation 0 keeps the first release's derivation, so sagas in flight keep their ids.
    """
    suffix = f"|{generation}" if generation else ""
    return hashlib.sha256(f"{saga_id}|{step}|{phase}{suffix}".encode()).hexdigest()[:32]


def command_message_id(effect_id: str, attempt: int) -> str:
    """A command's message id: unique per send, and derivable from the saga's state."""
    return f"{effect_id}.{attempt}"


def timed_out_command(state: SagaState, now: float) -> str | None:
    """The message id of the sent command whose timeout a tick at ``now`` would judge.

    The runner asks the outbox whether it is still there: then it never left, and the
    tick says so (``Tick.unpublished``) instead of spending an attempt.
    """
    waiting = state.waiting
    if waiting is None or not waiting.sent or now < waiting.due or state.status.is_finished:
        return None
    record = state.steps[waiting.step]
    generation = record.generation if waiting.phase == "forward" else record.compensation_generation
    return command_message_id(
        effect_id(state.saga_id, waiting.step, waiting.phase, generation), waiting.attempt
    )


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


def _unit(saga_id: str, step: str, phase: str, attempt: int) -> float:
    """A deterministic number in [0, 1) that spreads retries of different sagas apart."""
    digest = hashlib.sha256(f"{saga_id}|{step}|{phase}|{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class _Draft:
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

    def note(
        self, what: str, step: str = "", phase: str = "", attempt: int = 0, detail: str = ""
    ) -> None:
        # History is kept in clear for the retention: no card number, whatever the source
        # (a refusal reason, an operator's note).
        entry = HistoryEntry(self.now, what, step, phase, attempt, mask_pans(detail)[:500])
        self.history.append(entry)

    def decision(self) -> Decision:
        wake = _wake_at(self.definition, self.state)
        return Decision(
            self.state.model_copy(update={"wake_at": wake}),
            tuple(self.effects),
            tuple(self.history),
        )


def _pivot_started(definition: SagaDefinition, state: SagaState) -> bool:
    pivot = definition.pivot_index
    return (
        pivot is not None
        and state.steps[definition.steps[pivot].name].status is not StepStatus.PENDING
    )


def _wake_at(definition: SagaDefinition, state: SagaState) -> float | None:
    times = [state.waiting.due] if state.waiting else []
    if (
        state.status is SagaStatus.RUNNING
        and state.deadline is not None
        and not _pivot_started(definition, state)
    ):
        times.append(state.deadline)
    return min(times) if times else None


# -- building and sending commands --------------------------------------------------------


def _context(state: SagaState) -> dict[str, Any]:
    return {
        "saga": {"id": state.saga_id},
        "input": state.input,
        "steps": {name: record.output for name, record in state.steps.items()},
    }


def _resolve(context: dict[str, Any], path: str) -> Any:
    value: Any = context
    for part in path.split("."):
        value = value[part]
    return value


def _build(action: Action, state: SagaState) -> dict[str, Any]:
    """The command body from the saga context, validated against its contract."""
    context = _context(state)
    raw = {field: _resolve(context, path) for field, path in action.payload.items()}
    model = contract_for(action.command)
    assert model is not None  # definitions are checked on load
    return model.model_validate(raw).model_dump(mode="json")


def _action(step: StepDefinition, phase: Phase) -> Action:
    if phase == "forward":
        return step.action
    assert step.compensation is not None  # only compensatable steps are compensated
    return step.compensation


def _send(d: _Draft, step_name: str, phase: Phase, attempt: int) -> None:
    step = d.definition.step(step_name)
    action = _action(step, phase)
    try:
        body = _build(action, d.state)
    except (KeyError, TypeError, ValidationError) as exc:
        _fail_to_build(d, step_name, phase, f"invalid_payload: {_why(exc)}")
        return
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
    d.update(
        waiting=Waiting(
            step=step_name, phase=phase, attempt=attempt, sent=True, due=d.now + action.timeout_s
        )
    )
    if noteworthy(attempt):
        d.note("sent", step_name, phase, attempt, action.command)


def _why(exc: Exception) -> str:
    """What failed, never the values: a validation error's text quotes the input (a token)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors(include_input=False)[:5]
        )
    return str(exc)  # a missing key or a wrong type: names, not values


def _fail_to_build(d: _Draft, step_name: str, phase: Phase, reason: str) -> None:
    """A payload that cannot be built is a definition or data bug: stop moving forward."""
    d.note("payload_error", step_name, phase, 0, reason)
    if phase == "forward" and not _pivot_started(d.definition, d.state):
        d.set_step(step_name, status=StepStatus.REJECTED, error=reason)
        _begin_compensation(d, step_name, reason)
    else:
        _finish(d, SagaStatus.FAILED, "failed", failed_step=step_name, reason=reason)


# -- finishing ------------------------------------------------------------------------------


def _output(definition: SagaDefinition, state: SagaState) -> dict[str, object]:
    context = _context(state)
    found: dict[str, object] = {}
    for name, path in definition.output.items():
        try:
            found[name] = _resolve(context, path)
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


def _event(d: _Draft, event: Lifecycle, *, final: bool) -> None:
    d.effects.append(EmitEvent(describe(d.definition, d.state, event), final=final))


def _finish(d: _Draft, status: SagaStatus, event: Lifecycle, **changes: Any) -> None:
    d.update(status=status, waiting=None, **changes)
    d.note(event, detail=d.state.reason or "")
    _event(d, event, final=True)


# -- moving forward -----------------------------------------------------------------------


def start(
    definition: SagaDefinition,
    saga_id: str,
    message: Start,
    now: float,
    *,
    reply_to: str = "",
    traceparent: str = "",
) -> Decision:
    """The first decision of a new saga: record it and send its first command."""
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
    d = _Draft(definition, state, now)
    trace = trace_id(traceparent)  # in the timeline, to find the saga's trace and log lines
    d.note(
        "started",
        detail=f"{definition.name} v{definition.version}" + (f"; trace {trace}" if trace else ""),
    )
    _event(d, "started", final=False)
    _send(d, definition.steps[0].name, "forward", 1)
    return d.decision()


def _advance(d: _Draft, done: str) -> None:
    following = d.definition.index(done) + 1
    if following < len(d.definition.steps):
        _send(d, d.definition.steps[following].name, "forward", 1)
    else:
        _finish(d, SagaStatus.COMPLETED, "completed")


def _begin_compensation(d: _Draft, failed_step: str, reason: str) -> None:
    """Fix the undo list from recorded statuses: a step that never started is never undone."""
    plan = tuple(
        step.name
        for step in reversed(d.definition.steps)
        if step.kind == "compensatable" and d.state.steps[step.name].status in _TO_UNDO
    )
    d.update(
        status=SagaStatus.COMPENSATING,
        compensation_plan=plan,
        failed_step=failed_step,
        reason=reason,
        waiting=None,
    )
    d.note("compensating", failed_step, detail=f"{reason}; undo {', '.join(plan) or 'nothing'}")
    if plan:
        _send(d, plan[0], "compensate", 1)
    else:
        _finish(d, SagaStatus.COMPENSATED, "compensated")


def _compensate_next(d: _Draft, done: str) -> None:
    plan = d.state.compensation_plan
    position = plan.index(done) + 1
    if position < len(plan):
        _send(d, plan[position], "compensate", 1)
    else:
        _finish(d, SagaStatus.COMPENSATED, "compensated")


# -- retries ------------------------------------------------------------------------------


def _unlimited(step: StepDefinition, phase: Phase, outcome_unknown: bool) -> bool:
    """A retriable step, and a pivot whose outcome is unknown, are retried until answered.

    A technical failure leaves the pivot's outcome as unknown as a timeout does: an earlier
    attempt of the same effect may still be in flight or may have applied with its reply lost.
    """
    if phase != "forward":
        return False
    return step.kind == "retriable" or (step.kind == "pivot" and outcome_unknown)


def _next_generation(d: _Draft, waiting: Waiting) -> None:
    """A final answer used up the current effect id: the next send gets a new one."""
    record = d.state.steps[waiting.step]
    if waiting.phase == "forward":
        d.set_step(waiting.step, generation=record.generation + 1)
    else:
        d.set_step(waiting.step, compensation_generation=record.compensation_generation + 1)


def _budget_spent(d: _Draft, step: StepDefinition, waiting: Waiting) -> bool:
    """Both the attempt cap and the time budget of this step's phase are used up."""
    policy = _action(step, waiting.phase).retry
    record = d.state.steps[waiting.step]
    if waiting.phase == "forward":
        used, since = waiting.attempt, record.started_at
    else:
        used = waiting.attempt - record.compensation_budget_from
        since = record.compensation_started_at
    return policy.spent(used, d.now - (d.now if since is None else since))


def _retry_or_give_up(d: _Draft, waiting: Waiting, reason: str, *, outcome_unknown: bool) -> None:
    """Schedule the next attempt, or give up when the policy's budgets are spent.

    ``outcome_unknown``: the last attempt may have applied (a timeout or a technical
    failure), as opposed to a final refusal of the effect.
    """
    step = d.definition.step(waiting.step)
    policy = _action(step, waiting.phase).retry
    if _unlimited(step, waiting.phase, outcome_unknown) or not _budget_spent(d, step, waiting):
        attempt = waiting.attempt + 1
        delay = policy.backoff_s(
            attempt, _unit(d.state.saga_id, waiting.step, waiting.phase, attempt)
        )
        d.update(
            waiting=Waiting(
                step=waiting.step,
                phase=waiting.phase,
                attempt=attempt,
                sent=False,
                due=d.now + delay,
                after_refusal=not outcome_unknown,
            )
        )
        if noteworthy(attempt):
            d.note(
                "retry_scheduled",
                waiting.step,
                waiting.phase,
                attempt,
                f"{reason}; in {delay:.3f}s",
            )
        return
    if waiting.phase == "compensate":
        d.set_step(waiting.step, status=StepStatus.COMPENSATION_FAILED, error=reason)
        _finish(
            d,
            SagaStatus.FAILED,
            "failed",
            failed_step=waiting.step,
            reason=f"compensation failed: {reason}",
        )
        return
    # A final refusal took no effect: nothing to undo. Anything else may have applied.
    status = StepStatus.UNKNOWN if outcome_unknown else StepStatus.REJECTED
    d.set_step(waiting.step, status=status, error=reason, finished_at=d.now)
    assert step.kind != "retriable", "a retriable step is retried without limit"
    _begin_compensation(d, step.name, reason)


# -- events -------------------------------------------------------------------------------


def _sent_by_its_participant(definition: SagaDefinition, reply: ReplyReceived) -> bool:
    """Whether the reply's verified signer is the participant its step names."""
    try:
        return definition.step(reply.step).participant == reply.sender
    except KeyError:  # no such step: nobody may answer it
        return False


def _on_reply(d: _Draft, reply: ReplyReceived) -> Decision:
    waiting = d.state.waiting
    if not _sent_by_its_participant(d.definition, reply):
        return Decision(d.state, ignored="wrong_sender")
    if d.state.status.is_finished:
        return Decision(d.state, ignored="saga_finished")
    if (
        waiting is None
        or not waiting.sent
        or (reply.step, reply.phase) != (waiting.step, waiting.phase)
    ):
        return Decision(d.state, ignored="not_awaited")
    if reply.attempt != waiting.attempt:
        return Decision(d.state, ignored="stale_attempt")
    step = d.definition.step(waiting.step)
    expected = _action(step, waiting.phase).reply
    if reply.failure_reason is None and reply.kind != expected:
        reply = replace(reply, body={}, failure_reason="unexpected_reply", retriable=True)
    reason = reply.failure_reason
    if reason is None:
        _succeeded(d, step, waiting, reply)
    elif reply.retriable:  # a technical failure is no answer: same effect id again
        if noteworthy(waiting.attempt):
            d.note("failed", step.name, waiting.phase, waiting.attempt, f"{reason} (retriable)")
        _retry_or_give_up(d, waiting, reason, outcome_unknown=True)
    elif reason in _action(step, waiting.phase).retry.retriable_reasons:
        # a final refusal worth another try: that try is a new effect
        d.note("rejected", step.name, waiting.phase, waiting.attempt, f"{reason} (retriable)")
        _next_generation(d, waiting)
        _retry_or_give_up(d, waiting, reason, outcome_unknown=False)
    else:
        _rejected(d, step, waiting, reason)
    return d.decision()


def _succeeded(d: _Draft, step: StepDefinition, waiting: Waiting, reply: ReplyReceived) -> None:
    d.note("succeeded", step.name, waiting.phase, waiting.attempt, reply.kind)
    if waiting.phase == "forward":
        d.set_step(
            step.name, status=StepStatus.SUCCEEDED, output=reply.body, error=None, finished_at=d.now
        )
        _advance(d, step.name)
    else:
        d.set_step(step.name, status=StepStatus.COMPENSATED, error=None)
        _compensate_next(d, step.name)


def _rejected(d: _Draft, step: StepDefinition, waiting: Waiting, reason: str) -> None:
    d.note("rejected", step.name, waiting.phase, waiting.attempt, reason)
    if waiting.phase == "compensate":  # a compensation must not refuse: retry it, then fail
        _next_generation(d, waiting)  # the refusal is final for its effect id
        _retry_or_give_up(d, waiting, reason, outcome_unknown=False)
        return
    d.set_step(step.name, status=StepStatus.REJECTED, error=reason, finished_at=d.now)
    if step.kind == "retriable":
        # Definitions forbid business failures after the pivot; if one happens anyway the
        # money has moved and only a person can decide what to do.
        _finish(
            d,
            SagaStatus.FAILED,
            "failed",
            failed_step=step.name,
            reason=f"rejected after pivot: {reason}",
        )
        return
    _begin_compensation(d, step.name, reason)


def _interrupt(d: _Draft, waiting: Waiting, reason: str) -> None:
    """Stop waiting on a forward step. Its effect may have applied unless the effect last
    sent was finally refused and its retry is not out yet."""
    refused = not waiting.sent and waiting.after_refusal
    status = StepStatus.REJECTED if refused else StepStatus.UNKNOWN
    d.set_step(waiting.step, status=status, error=reason, finished_at=d.now)


def _on_tick(d: _Draft, tick: Tick) -> Decision:
    state = d.state
    if state.status.is_finished:
        return Decision(state, ignored="saga_finished")
    deadline_passed = state.deadline is not None and d.now >= state.deadline
    if (
        state.status is SagaStatus.RUNNING
        and deadline_passed
        and not _pivot_started(d.definition, state)
    ):
        waiting = state.waiting
        if waiting is not None:
            _interrupt(d, waiting, "saga_deadline")
        _begin_compensation(d, waiting.step if waiting else "", "saga_deadline")
        return d.decision()
    waiting = state.waiting
    if waiting is None or d.now < waiting.due:
        return Decision(state, ignored="not_due")
    if not waiting.sent:
        _send(d, waiting.step, waiting.phase, waiting.attempt)
    elif tick.unpublished:  # never reached the participant: wait again, count nothing
        timeout = _action(d.definition.step(waiting.step), waiting.phase).timeout_s
        d.update(waiting=waiting.model_copy(update={"due": d.now + timeout}))
        if noteworthy(waiting.attempt):
            d.note("unpublished", waiting.step, waiting.phase, waiting.attempt)
    else:
        if noteworthy(waiting.attempt):
            d.note("timed_out", waiting.step, waiting.phase, waiting.attempt)
        _retry_or_give_up(d, waiting, "timeout", outcome_unknown=True)
    return d.decision()


def _on_operator(d: _Draft, action: OperatorAction) -> Decision:
    state = d.state
    d.note(f"operator_{action.action}", detail=f"{action.actor}: {action.note}".strip(": "))
    if state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
        return Decision(state, ignored="saga_finished")
    if action.action == "abort":
        return _abort(d, action)
    waiting = state.waiting
    if state.status is SagaStatus.FAILED:
        # Resume the plan at its first step not yet undone. That is not always failed_step:
        # an abort without compensation leaves failed_step naming the forward step that failed.
        undone = StepStatus.COMPENSATED
        plan = state.compensation_plan
        resume = next((s for s in plan if state.steps[s].status is not undone), None)
        if action.action != "retry" or resume is None:
            return Decision(state, ignored="nothing_to_retry")
        # A fresh compensation budget, in attempts and time, from the step that ran out of it.
        record = state.steps[resume]
        d.set_step(
            resume,
            compensation_budget_from=record.compensation_attempts,
            compensation_started_at=d.now,
        )
        d.update(status=SagaStatus.COMPENSATING)
        _send(d, resume, "compensate", record.compensation_attempts + 1)
        return d.decision()
    if waiting is None:
        return Decision(state, ignored="nothing_to_resume")
    _send(d, waiting.step, waiting.phase, waiting.attempt + 1)  # send again now, new attempt
    return d.decision()


# Step statuses that say nothing is held: never sent, finally refused, or undone.
_NOTHING_HELD = (StepStatus.PENDING, StepStatus.REJECTED, StepStatus.COMPENSATED)


def _abort(d: _Draft, action: OperatorAction) -> Decision:
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
        _finish(d, SagaStatus.FAILED, "failed", reason=f"aborted by {action.actor}")
        return d.decision()
    if state.status is not SagaStatus.RUNNING or _pivot_started(d.definition, state):
        return Decision(state, ignored="cannot_compensate_now")
    waiting = state.waiting
    if waiting is not None:
        _interrupt(d, waiting, "aborted")
    _begin_compensation(d, waiting.step if waiting else "", f"aborted by {action.actor}")
    return d.decision()


def decide(definition: SagaDefinition, state: SagaState, event: Event, now: float) -> Decision:
    """The next state and effects for one event. ``ignored`` is set when nothing changes."""
    draft = _Draft(definition, state, now)
    if isinstance(event, ReplyReceived):
        decision = _on_reply(draft, event)
    elif isinstance(event, Tick):
        decision = _on_tick(draft, event)
    else:
        decision = _on_operator(draft, event)
    if decision.ignored is not None:  # the caller writes nothing: show it the state it keeps
        return Decision(state, ignored=decision.ignored)
    return decision
