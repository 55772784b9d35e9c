"""The pure saga engine: ``decide(definition, state, event, now) -> Decision``.

No I/O, no clock, no randomness (see ``draft``). The engine is split by concern:
``forward`` (stages, parallel groups, conditions), ``compensation`` (the undo plan and its
waves), ``retries`` (budgets and effect generations), ``operator`` (retry, resume, abort)
and ``sending`` (commands and lifecycle events). Rules (design.md §5, docs/protocol.md):

- A reply counts only if it answers something the saga waits for, at the current attempt.
- Before the pivot a failed or timed-out step is retried under its policy (attempts *and*
  time); then every branch still in flight is interrupted and the saga compensates every
  compensatable step that was sent and whose latest effect is not known to be absent.
- The pivot is retried without limit on timeouts; retriable steps until they succeed.
- A compensation is retried under its own policy; when that runs out the saga is ``failed``
  and waits for an operator.
- One outcome per effect id: a timeout or a technical failure is retried under the same
  effect id; after a business answer, the next send goes out under the next generation.
- History stays bounded: repeated retries of one step are noted on a log scale.
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.effects import Decision, Event, ReplyReceived, Tick
from orchestrator.core.engine.compensation import compensated, send_command, stop_forward
from orchestrator.core.engine.draft import (
    Draft,
    action_of,
    command_message_id,
    command_ttl_s,
    effect_id,
    noteworthy,
    pivot_started,
    timed_out_commands,
    waited_command,
)
from orchestrator.core.engine.forward import rejected, start, succeeded
from orchestrator.core.engine.operator import on_operator
from orchestrator.core.engine.retries import next_generation, retry_or_give_up
from orchestrator.core.engine.sending import describe
from orchestrator.core.state import SagaState, SagaStatus, Waiting

__all__ = [
    "command_message_id",
    "command_ttl_s",
    "decide",
    "describe",
    "effect_id",
    "noteworthy",
    "start",
    "timed_out_commands",
]


def _sent_by_its_participant(definition: SagaDefinition, reply: ReplyReceived) -> bool:
    """Whether the reply's verified signer is the participant its step names."""
    try:
        return definition.step(reply.step).participant == reply.sender
    except KeyError:  # no such step: nobody may answer it
        return False


def _on_reply(d: Draft, reply: ReplyReceived) -> Decision:
    if not _sent_by_its_participant(d.definition, reply):
        return Decision(d.state, ignored="wrong_sender")
    if d.state.status.is_finished:
        return Decision(d.state, ignored="saga_finished")
    waiting = d.wait_for(reply.step)
    if waiting is None or not waiting.sent or reply.phase != waiting.phase:
        return Decision(d.state, ignored="not_awaited")
    if reply.attempt != waiting.attempt:
        return Decision(d.state, ignored="stale_attempt")
    step = d.definition.step(waiting.step)
    action = action_of(step, waiting.phase)
    if reply.failure_reason is None and reply.kind != action.reply:
        reply = replace(reply, body={}, failure_reason="unexpected_reply", retriable=True)
    reason = reply.failure_reason
    if reason is None:
        d.note("succeeded", step.name, waiting.phase, waiting.attempt, reply.kind)
        if waiting.phase == "forward":
            succeeded(d, step, reply)
        else:
            compensated(d, step.name)
    elif reply.retriable:  # a technical failure is no answer: same effect id again
        if noteworthy(waiting.attempt):
            d.note("failed", step.name, waiting.phase, waiting.attempt, f"{reason} (retriable)")
        retry_or_give_up(d, waiting, reason, outcome_unknown=True)
    elif reason in action.retry.retriable_reasons or waiting.phase == "compensate":
        # A final refusal worth another try (a compensation must not refuse: it is retried,
        # then the saga fails): that try is a new effect.
        suffix = " (retriable)" if waiting.phase == "forward" else ""
        d.note("rejected", step.name, waiting.phase, waiting.attempt, f"{reason}{suffix}")
        next_generation(d, waiting)
        retry_or_give_up(d, waiting, reason, outcome_unknown=False)
    else:
        d.note("rejected", step.name, waiting.phase, waiting.attempt, reason)
        rejected(d, step, waiting, reason)
    return d.decision()


def _deadline_passed(d: Draft) -> bool:
    state = d.state
    return (
        state.status is SagaStatus.RUNNING
        and state.deadline is not None
        and d.now >= state.deadline
        and not pivot_started(d.definition, state)
    )


def _on_tick(d: Draft, tick: Tick) -> Decision:
    state = d.state
    if state.status.is_finished:
        return Decision(state, ignored="saga_finished")
    if _deadline_passed(d):
        stop_forward(d, state.waiting[0].step if state.waiting else "", "saga_deadline")
        return d.decision()
    due = [w for w in state.waiting if d.now >= w.due]
    if not due:
        return Decision(state, ignored="not_due")
    for waiting in due:
        if d.is_current(waiting):  # an earlier one may have stopped the others
            _on_due(d, waiting, tick)
    return d.decision()


def _on_due(d: Draft, waiting: Waiting, tick: Tick) -> None:
    if not waiting.sent:
        send_command(d, waiting.step, waiting.phase, waiting.attempt)
    elif waited_command(d.state, waiting) in tick.unpublished:
        # never reached the participant: wait again, count nothing
        timeout = action_of(d.definition.step(waiting.step), waiting.phase).timeout_s
        d.put_wait(waiting.model_copy(update={"due": d.now + timeout}))
        if noteworthy(waiting.attempt):
            d.note("unpublished", waiting.step, waiting.phase, waiting.attempt)
    else:
        if noteworthy(waiting.attempt):
            d.note("timed_out", waiting.step, waiting.phase, waiting.attempt)
        retry_or_give_up(d, waiting, "timeout", outcome_unknown=True)


def decide(definition: SagaDefinition, state: SagaState, event: Event, now: float) -> Decision:
    """The next state and effects for one event. ``ignored`` is set when nothing changes."""
    draft = Draft(definition, state, now)
    if isinstance(event, ReplyReceived):
        decision = _on_reply(draft, event)
    elif isinstance(event, Tick):
        decision = _on_tick(draft, event)
    else:
        decision = on_operator(draft, event)
    if decision.ignored is not None:  # the caller writes nothing: show it the state it keeps
        return Decision(state, ignored=decision.ignored)
    return decision
