"""Example-based tests of the pure engine: one rule per test, named for the rule."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from contracts.base import StepFailed
from contracts.envelope import Phase
from contracts.money import Money
from orchestrator.core.definition import RetryPolicy, SagaDefinition
from orchestrator.core.effects import (
    Decision,
    EmitEvent,
    Event,
    OperatorAction,
    ReplyReceived,
    SendCommand,
    Tick,
)
from orchestrator.core.engine import (
    command_message_id,
    decide,
    effect_id,
    start,
    timed_out_commands,
)
from orchestrator.core.state import SagaState, SagaStatus, StepRecord, StepStatus, Waiting
from participants.payments.contracts import StartTransaction
from tests.support.sagas import parse, payment_definition


def only(state: SagaState) -> Waiting | None:
    """What a saga of a sequential definition waits for (never more than one thing)."""
    assert len(state.waiting) <= 1
    return state.waiting[0] if state.waiting else None


PAYMENT = payment_definition()
AUTHORIZE, RISK, PCI, CAPTURE = (
    "authorize_payment",
    "assess_risk",
    "check_compliance",
    "capture_transaction",
)
T0 = 1_000.0
FAILED_KIND = StepFailed.KIND

# A valid reply body for every reply kind the definitions name.
REPLY_BODIES: dict[str, dict[str, Any]] = {
    "payments.payment_authorized.v1": {"hold_id": "hold-1"},
    "payments.risk_assessed.v1": {"score": 12},
    "payments.compliance_approved.v1": {"attestation_id": "att-1"},
    "payments.transaction_captured.v1": {"capture_id": "cap-1"},
    "payments.authorization_voided.v1": {"released": True},
    "payments.risk_exposure_released.v1": {"released": True},
    "payments.attestation_revoked.v1": {"revoked": True},
}

# A small definition with a retriable step after the pivot and a tight compensation budget.
NOTIFY = parse(
    {
        "name": "capture_then_release",
        "version": 1,
        "trigger": "payments.start_transaction.v1",
        "deadline_s": 60,
        "steps": [
            {
                "name": AUTHORIZE,
                "participant": "payment",
                "action": {
                    "command": "payments.authorize_payment.v1",
                    "reply": "payments.payment_authorized.v1",
                    "payload": {"account_id": "input.account_id", "amount": "input.amount"},
                    "timeout_s": 2,
                    "retry": {
                        "max_attempts": 2,
                        "initial_backoff_s": 0.1,
                        "max_backoff_s": 1,
                        "retriable_reasons": ["busy"],
                    },
                },
                "compensation": {
                    "command": "payments.void_authorization.v1",
                    "reply": "payments.authorization_voided.v1",
                    "timeout_s": 2,
                    "retry": {"max_attempts": 3, "initial_backoff_s": 0.1, "max_backoff_s": 1},
                },
            },
            {
                "name": PCI,
                "participant": "pci",
                "action": {
                    "command": "payments.check_compliance.v1",
                    "reply": "payments.compliance_approved.v1",
                    "payload": {
                        "card_token": "input.card_token",
                        "merchant_id": "input.merchant_id",
                    },
                    "timeout_s": 2,
                    "retry": {"max_attempts": 2, "initial_backoff_s": 0.1, "max_backoff_s": 1},
                },
                "compensation": {
                    "command": "payments.revoke_attestation.v1",
                    "reply": "payments.attestation_revoked.v1",
                    "timeout_s": 2,
                    "retry": {"max_attempts": 3, "initial_backoff_s": 0.1, "max_backoff_s": 1},
                },
            },
            {
                "name": CAPTURE,
                "participant": "transaction",
                "kind": "pivot",
                "action": {
                    "command": "payments.capture_transaction.v1",
                    "reply": "payments.transaction_captured.v1",
                    "payload": {
                        "hold_id": "steps.authorize_payment.hold_id",
                        "merchant_id": "input.merchant_id",
                        "amount": "input.amount",
                        "attestation_id": "steps.check_compliance.attestation_id",
                    },
                    "timeout_s": 2,
                    "retry": {"max_attempts": 2, "initial_backoff_s": 0.1, "max_backoff_s": 1},
                },
            },
            {
                "name": "release_exposure",
                "participant": "risk",
                "kind": "retriable",
                "action": {
                    "command": "payments.release_risk_exposure.v1",
                    "reply": "payments.risk_exposure_released.v1",
                    "timeout_s": 2,
                    "retry": {"max_attempts": 2, "initial_backoff_s": 0.1, "max_backoff_s": 1},
                },
            },
        ],
        "output": {"capture_id": "steps.capture_transaction.capture_id"},
    }
)


def a_start(key: str = "order-1") -> StartTransaction:
    return StartTransaction(
        idempotency_key=key,
        account_id="acct-1",
        merchant_id="merchant-1",
        amount=Money(minor=1250, currency="EUR"),
        card_token="tok_abcdefgh1234",
    )


class Saga:
    """A saga under test: the state the caller keeps, the clock, and every decision."""

    def __init__(self, definition: SagaDefinition = PAYMENT, saga_id: str = "saga-1") -> None:
        self.definition = definition
        self.now = T0
        first = start(definition, saga_id, a_start(), self.now)
        self.state: SagaState = first.state
        self.decisions: list[Decision] = [first]

    @property
    def last(self) -> Decision:
        return self.decisions[-1]

    def feed(self, event: Event, at: float | None = None) -> Decision:
        """Decide on one event; keep the new state unless the engine ignored the event."""
        self.now = self.now if at is None else at
        decision = decide(self.definition, self.state, event, self.now)
        if decision.ignored is None:
            self.state = decision.state
        self.decisions.append(decision)
        return decision

    def sent(self) -> SendCommand:
        """The one command the last decision sent."""
        (command,) = sends(self.last)
        return command

    def answer(self, reply: ReplyReceived | None = None) -> Decision:
        return self.feed(reply or ok(self.definition, self.sent()), self.now + 0.01)

    def reply_ok_until(self, step: str) -> SendCommand:
        """Answer every command with success until ``step`` is sent forward."""
        while (command := self.sent()).step != step or command.phase != "forward":
            self.answer()
        return command

    def tick(self, at: float | None = None) -> Decision:
        when = at if at is not None else self.state.wake_at
        assert when is not None
        return self.feed(Tick(), when)

    def fail_forever(self, technical: bool = True) -> Decision:
        """Fail (or time out) the awaited command, and fire its retries, until it is given up."""
        assert only(self.state) is not None
        awaited = (only(self.state).step, only(self.state).phase)
        while (waiting := only(self.state)) and (waiting.step, waiting.phase) == awaited:
            if waiting.sent and technical:
                self.feed(failure(self.sent(), retriable=True, reason="db_down"), self.now + 0.01)
            else:
                self.tick()
        return self.last

    def all_sends(self) -> list[SendCommand]:
        return [c for d in self.decisions for c in sends(d)]

    def finals(self) -> list[EmitEvent]:
        return [
            e for d in self.decisions for e in d.effects if isinstance(e, EmitEvent) and e.final
        ]


def sends(decision: Decision) -> list[SendCommand]:
    return [e for e in decision.effects if isinstance(e, SendCommand)]


def reply_kind(definition: SagaDefinition, command: SendCommand) -> str:
    step = definition.step(command.step)
    action = step.action if command.phase == "forward" else step.compensation
    assert action is not None
    return action.reply


def ok(definition: SagaDefinition, command: SendCommand) -> ReplyReceived:
    kind = reply_kind(definition, command)
    return ReplyReceived(
        command.step, command.phase, command.attempt, kind, REPLY_BODIES[kind],
        sender=command.participant,
    )  # fmt: skip


def failure(command: SendCommand, *, retriable: bool, reason: str = "declined") -> ReplyReceived:
    body = StepFailed(reason=reason, retriable=retriable).model_dump(mode="json")
    return ReplyReceived(
        command.step, command.phase, command.attempt, FAILED_KIND, body, reason, retriable,
        sender=command.participant,
    )  # fmt: skip


def reply_to(
    step: str, phase: Phase, attempt: int, definition: SagaDefinition = PAYMENT
) -> ReplyReceived:
    action = (
        definition.step(step).action if phase == "forward" else definition.step(step).compensation
    )
    assert action is not None
    return ReplyReceived(
        step, phase, attempt, action.reply, REPLY_BODIES[action.reply],
        sender=definition.step(step).participant,
    )  # fmt: skip


def compensations(saga: Saga) -> list[str]:
    """Compensated steps in the order their first compensation was sent."""
    order: list[str] = []
    for command in saga.all_sends():
        if command.phase == "compensate" and command.step not in order:
            order.append(command.step)
    return order


# -- the happy path -------------------------------------------------------------------------


def test_happy_path_sends_the_four_commands_in_order_and_completes_with_output() -> None:
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    saga.answer()

    assert [(c.step, c.phase, c.attempt) for c in saga.all_sends()] == [
        (AUTHORIZE, "forward", 1),
        (RISK, "forward", 1),
        (PCI, "forward", 1),
        (CAPTURE, "forward", 1),
    ]
    assert saga.state.status is SagaStatus.COMPLETED
    assert all(r.status is StepStatus.SUCCEEDED for r in saga.state.steps.values())
    (final,) = saga.finals()
    assert final.event.event == "completed"
    assert final.event.output == {"hold_id": "hold-1", "capture_id": "cap-1"}


def test_commands_carry_payloads_built_from_input_and_earlier_outputs() -> None:
    saga = Saga()
    capture = saga.reply_ok_until(CAPTURE)
    assert capture.body == {
        "hold_id": "hold-1",
        "merchant_id": "merchant-1",
        "amount": {"minor": 1250, "currency": "EUR"},
        "attestation_id": "att-1",
    }
    assert capture.participant == "transaction"
    assert capture.deadline == saga.now + 5


# -- business failures compensate what completed -------------------------------------------


@pytest.mark.parametrize(
    ("failing", "undone"),
    [
        (AUTHORIZE, []),
        (RISK, [AUTHORIZE]),
        (PCI, [RISK, AUTHORIZE]),
        (CAPTURE, [PCI, RISK, AUTHORIZE]),
    ],
)
def test_business_failure_compensates_the_completed_steps_in_reverse(
    failing: str, undone: list[str]
) -> None:
    saga = Saga()
    command = saga.reply_ok_until(failing)
    saga.answer(failure(command, retriable=False, reason="card_declined"))
    while saga.state.status is SagaStatus.COMPENSATING:
        saga.answer()

    assert compensations(saga) == undone
    assert saga.state.status is SagaStatus.COMPENSATED
    assert saga.state.failed_step == failing
    assert saga.state.reason == "card_declined"
    assert saga.state.steps[failing].status is StepStatus.REJECTED
    assert [f.event.event for f in saga.finals()] == ["compensated"]


def test_compensation_commands_name_the_forward_effect_they_undo() -> None:
    saga = Saga()
    command = saga.reply_ok_until(RISK)
    saga.answer(failure(command, retriable=False))
    void = saga.sent()
    assert void.phase == "compensate"
    assert void.kind == "payments.void_authorization.v1"
    assert void.compensates == effect_id("saga-1", AUTHORIZE, "forward")
    assert void.effect_id == effect_id("saga-1", AUTHORIZE, "compensate")
    assert void.effect_id != void.compensates


def test_a_step_never_started_is_never_compensated() -> None:
    saga = Saga()
    command = saga.reply_ok_until(RISK)
    saga.answer(failure(command, retriable=False))
    assert saga.state.compensation_plan == (AUTHORIZE,)
    assert saga.state.steps[PCI].status is StepStatus.PENDING


# -- technical failures and timeouts are retried --------------------------------------------


def test_technical_failure_schedules_a_retry_that_resends_with_the_same_effect_id() -> None:
    saga = Saga()
    first = saga.reply_ok_until(RISK)
    decision = saga.answer(failure(first, retriable=True, reason="db_down"))

    assert sends(decision) == []
    waiting = only(saga.state)
    assert waiting is not None
    assert (waiting.step, waiting.attempt, waiting.sent) == (RISK, 2, False)
    assert waiting.due > saga.now
    assert saga.state.wake_at == waiting.due

    assert saga.tick(waiting.due - 0.001).ignored == "not_due"
    saga.tick(waiting.due)
    second = saga.sent()
    assert (second.step, second.attempt) == (RISK, 2)
    assert second.effect_id == first.effect_id
    assert second.body == first.body


def test_retries_exhausted_before_the_pivot_make_the_step_unknown_and_compensate_it() -> None:
    saga = Saga()
    saga.reply_ok_until(RISK)
    saga.fail_forever(technical=True)

    risk = saga.state.steps[RISK]
    policy = PAYMENT.step(RISK).action.retry
    assert risk.error == "db_down"
    assert risk.attempts >= policy.max_attempts  # both budgets were spent
    assert risk.started_at is not None
    assert saga.now - risk.started_at >= policy.give_up_after_s
    assert saga.state.status is SagaStatus.COMPENSATING
    assert saga.state.failed_step == RISK
    assert saga.state.compensation_plan == (RISK, AUTHORIZE)
    assert saga.sent().kind == "payments.release_risk_exposure.v1"


def test_a_timeout_counts_as_a_failed_attempt() -> None:
    saga = Saga()
    first = saga.sent()
    decision = saga.tick(first.deadline)
    waiting = only(saga.state)
    assert sends(decision) == []
    assert waiting is not None
    assert (waiting.step, waiting.attempt, waiting.sent) == (AUTHORIZE, 2, False)

    saga.fail_forever(technical=False)
    authorize = saga.state.steps[AUTHORIZE]
    assert authorize.error == "timeout"
    assert authorize.attempts >= PAYMENT.step(AUTHORIZE).action.retry.max_attempts
    assert saga.state.failed_step == AUTHORIZE
    assert compensations(saga) == [AUTHORIZE]  # its compensation is safe if it never ran


def test_the_pivot_is_retried_without_limit_on_timeouts_and_never_compensated() -> None:
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    for _ in range(15):  # capture_transaction allows 6 attempts; timeouts do not count
        saga.tick()
    assert saga.state.status is SagaStatus.RUNNING
    assert saga.state.steps[CAPTURE].attempts > 6
    assert all(c.phase == "forward" for c in saga.all_sends())
    assert saga.state.wake_at is not None


def test_a_late_reply_for_the_current_pivot_attempt_completes_the_saga() -> None:
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    for _ in range(8):
        saga.tick()
    if not only(saga.state) or not only(saga.state).sent:
        saga.tick()
    current = saga.sent()
    saga.feed(ok(PAYMENT, current), current.deadline - 0.001)
    assert saga.state.status is SagaStatus.COMPLETED


def test_pivot_technical_failures_after_a_lost_reply_never_compensate() -> None:
    """A capture whose reply was lost may have moved money: later technical failures of the
    same effect do not prove it did not, so the saga must keep asking, not void the hold."""
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    saga.tick()  # attempt 1 timed out: the capture may have happened
    for _ in range(10):  # more technical failures than capture's max_attempts
        if not only(saga.state) or not only(saga.state).sent:
            saga.tick()
        saga.answer(failure(saga.sent(), retriable=True, reason="db_down"))
    assert saga.state.status is SagaStatus.RUNNING
    assert saga.state.steps[CAPTURE].status is StepStatus.RUNNING
    assert compensations(saga) == []


def test_a_reply_of_an_unexpected_kind_counts_as_a_technical_failure() -> None:
    saga = Saga()
    command = saga.sent()
    odd = ReplyReceived(
        AUTHORIZE, "forward", 1, "payments.risk_assessed.v1", {"score": 1}, sender="payment"
    )
    saga.answer(odd)
    waiting = only(saga.state)
    assert waiting is not None
    assert (waiting.attempt, waiting.sent) == (2, False)
    assert saga.state.steps[AUTHORIZE].output == {}
    assert command.attempt == 1


@pytest.mark.parametrize("sender", ["risk", "orchestrator", "cli", ""])
def test_a_reply_signed_by_another_than_the_steps_participant_is_ignored(sender: str) -> None:
    """Validly signed, by the wrong service: a forged approval moves nothing (issue 11)."""
    saga = Saga()
    command = saga.sent()
    forged = replace(ok(saga.definition, command), sender=sender)
    before = saga.state
    decision = saga.answer(forged)
    assert decision.ignored == "wrong_sender"
    assert decision.effects == ()
    assert saga.state == before
    assert saga.answer(ok(saga.definition, command)).ignored is None  # the real one counts


def test_a_reply_for_a_step_the_definition_lacks_is_wrong_sender() -> None:
    saga = Saga()
    command = saga.sent()
    stray = replace(ok(saga.definition, command), step="no_such_step")
    assert saga.answer(stray).ignored == "wrong_sender"


def test_a_business_reason_listed_as_retriable_is_retried() -> None:
    saga = Saga(NOTIFY)
    saga.answer(failure(saga.sent(), retriable=False, reason="busy"))
    waiting = only(saga.state)
    assert waiting is not None
    assert (waiting.step, waiting.attempt, waiting.sent) == (AUTHORIZE, 2, False)


def test_a_retriable_step_after_the_pivot_is_retried_until_it_succeeds() -> None:
    saga = Saga(NOTIFY)
    saga.reply_ok_until("release_exposure")
    for _ in range(6):  # its max_attempts is 2
        saga.answer(failure(saga.sent(), retriable=True))
        saga.tick()
    assert saga.state.status is SagaStatus.RUNNING
    assert saga.state.steps["release_exposure"].attempts == 7
    saga.answer()
    assert saga.last.state.status is SagaStatus.COMPLETED
    assert compensations(saga) == []


def test_a_business_refusal_after_the_pivot_fails_the_saga_for_an_operator() -> None:
    saga = Saga(NOTIFY)
    command = saga.reply_ok_until("release_exposure")
    saga.answer(failure(command, retriable=False, reason="nope"))
    assert saga.state.status is SagaStatus.FAILED
    assert saga.state.failed_step == "release_exposure"
    assert saga.state.reason == "rejected after pivot: nope"
    assert compensations(saga) == []


# -- what is ignored ------------------------------------------------------------------------


def assert_ignored(saga: Saga, event: Event, reason: str, at: float | None = None) -> None:
    before = saga.state
    decision = saga.feed(event, at)
    assert decision.ignored == reason
    assert decision.effects == ()
    assert decision.state == before


def test_a_reply_for_an_earlier_attempt_is_stale() -> None:
    saga = Saga()
    first = saga.sent()
    saga.answer(failure(first, retriable=True))
    saga.tick()
    assert_ignored(saga, ok(PAYMENT, first), "stale_attempt")
    assert only(saga.state) is not None
    assert only(saga.state).attempt == 2


def test_a_reply_while_a_retry_is_scheduled_is_not_awaited() -> None:
    saga = Saga()
    first = saga.sent()
    saga.answer(failure(first, retriable=True))
    assert_ignored(saga, ok(PAYMENT, first), "not_awaited")


def test_a_reply_for_a_step_or_phase_not_awaited_is_ignored() -> None:
    saga = Saga()
    saga.reply_ok_until(PCI)
    assert_ignored(saga, reply_to(AUTHORIZE, "forward", 1), "not_awaited")
    assert_ignored(saga, reply_to(CAPTURE, "forward", 1), "not_awaited")
    assert_ignored(saga, reply_to(PCI, "compensate", 1), "not_awaited")


def test_a_duplicate_reply_is_ignored() -> None:
    saga = Saga()
    reply = ok(PAYMENT, saga.sent())
    saga.answer(reply)
    assert_ignored(saga, reply, "not_awaited")


def test_replies_after_the_saga_finished_are_ignored() -> None:
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    capture = saga.sent()
    saga.answer()
    assert_ignored(saga, ok(PAYMENT, capture), "saga_finished")
    assert_ignored(saga, failure(capture, retriable=False), "saga_finished")
    assert_ignored(saga, Tick(), "saga_finished", saga.now + 1_000)


def test_a_tick_before_anything_is_due_is_ignored() -> None:
    saga = Saga()
    assert_ignored(saga, Tick(), "not_due", saga.now + 1)


# -- compensation failures ------------------------------------------------------------------


def a_failed_saga() -> Saga:
    """Capture refused; revoking the attestation then fails technically until out of budget."""
    saga = Saga()
    saga.answer(failure(saga.reply_ok_until(CAPTURE), retriable=False, reason="card_declined"))
    saga.fail_forever(technical=True)
    return saga


def test_compensation_failures_retry_under_the_compensation_policy_then_fail() -> None:
    saga = a_failed_saga()
    revokes = [c for c in saga.all_sends() if c.phase == "compensate"]
    policy = PAYMENT.step(PCI).compensation.retry  # type: ignore[union-attr]
    assert len(revokes) >= policy.max_attempts  # the compensation's budgets, not the step's
    assert revokes[-1].deadline - revokes[0].deadline >= policy.give_up_after_s
    assert {c.step for c in revokes} == {PCI}
    assert len({c.effect_id for c in revokes}) == 1  # technical failures: the same effect
    assert saga.state.status is SagaStatus.FAILED
    assert saga.state.failed_step == PCI
    assert saga.state.reason == "compensation failed: db_down"
    assert saga.state.steps[PCI].status is StepStatus.COMPENSATION_FAILED
    assert saga.state.wake_at is None
    assert [f.event.event for f in saga.finals()] == ["failed"]
    assert saga.finals()[0].event.failed_step == PCI


def test_a_refused_compensation_is_retried_not_accepted() -> None:
    saga = Saga()
    saga.answer(failure(saga.reply_ok_until(RISK), retriable=False))
    first = saga.sent()
    saga.answer(failure(first, retriable=False, reason="not_now"))
    waiting = only(saga.state)
    assert waiting is not None
    assert (waiting.step, waiting.phase, waiting.attempt) == (AUTHORIZE, "compensate", 2)
    again = sends(saga.tick())[0]
    # the refusal was final for its effect id: the retry is a new effect undoing the same one
    assert again.effect_id != first.effect_id
    assert again.compensates == first.compensates


def test_operator_retry_on_a_failed_saga_resumes_compensation_with_a_new_attempt() -> None:
    saga = a_failed_saga()
    old = [c for c in saga.all_sends() if c.phase == "compensate"][-1]
    saga.feed(OperatorAction("retry"), saga.now + 60)
    resent = saga.sent()
    assert saga.state.status is SagaStatus.COMPENSATING
    assert (resent.step, resent.phase, resent.attempt) == (PCI, "compensate", old.attempt + 1)
    assert resent.effect_id == old.effect_id  # it never got a final answer
    while saga.state.status is SagaStatus.COMPENSATING:
        saga.answer()
    assert compensations(saga) == [PCI, RISK, AUTHORIZE]
    assert saga.state.status is SagaStatus.COMPENSATED
    assert [f.event.event for f in saga.finals()] == ["failed", "compensated"]


def test_operator_retry_gives_the_failed_compensation_a_fresh_budget() -> None:
    """engine.py: 'A fresh compensation budget from the step that ran out of it.'"""
    saga = a_failed_saga()
    saga.feed(OperatorAction("retry"), saga.now + 60)
    resent = saga.sent()
    saga.answer(failure(resent, retriable=True))
    assert saga.state.status is SagaStatus.COMPENSATING
    waiting = only(saga.state)
    assert waiting is not None
    assert (waiting.step, waiting.attempt, waiting.sent) == (PCI, resent.attempt + 1, False)


def test_an_abort_without_compensation_during_compensation_is_refused() -> None:
    """Ending it there would strand the holds not yet undone (finding 6)."""
    saga = Saga()
    saga.answer(failure(saga.reply_ok_until(CAPTURE), retriable=False))
    assert saga.sent().step == PCI
    assert_ignored(saga, OperatorAction("abort", compensate=False), "may_hold_effects")


def test_operator_retry_on_a_finished_saga_is_ignored() -> None:
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    saga.answer()
    assert_ignored(saga, OperatorAction("retry"), "saga_finished")


# -- operator abort -------------------------------------------------------------------------


def test_abort_with_compensation_before_the_pivot_compensates() -> None:
    saga = Saga()
    saga.reply_ok_until(PCI)
    saga.feed(OperatorAction("abort", compensate=True, actor="alice"), saga.now + 1)
    assert saga.state.status is SagaStatus.COMPENSATING
    assert saga.state.steps[PCI].status is StepStatus.COMPENSATING  # was unknown: undone too
    assert saga.state.compensation_plan == (PCI, RISK, AUTHORIZE)
    assert saga.state.reason == "aborted by alice"
    while saga.state.status is SagaStatus.COMPENSATING:
        saga.answer()
    assert saga.state.status is SagaStatus.COMPENSATED


def test_abort_with_compensation_after_the_pivot_is_ignored() -> None:
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    assert_ignored(saga, OperatorAction("abort", compensate=True), "cannot_compensate_now")


def test_abort_without_compensation_is_refused_while_a_step_may_hold_an_effect() -> None:
    """The first release ended the saga failed with the hold still held (finding 6)."""
    saga = Saga()
    saga.reply_ok_until(RISK)
    assert_ignored(saga, OperatorAction("abort", compensate=False), "may_hold_effects")
    saga.feed(OperatorAction("abort", compensate=True, actor="bob"), saga.now + 1)
    assert saga.state.status is SagaStatus.COMPENSATING
    assert saga.state.compensation_plan == (RISK, AUTHORIZE)


def test_abort_without_compensation_ends_a_saga_that_holds_nothing() -> None:
    saga = Saga()
    saga.answer(failure(saga.sent(), retriable=False, reason="injected"))
    assert saga.state.status is SagaStatus.COMPENSATED  # the refused step took no effect
    failed = Saga()
    failed.state = failed.state.model_copy(
        update={"steps": {n: StepRecord() for n in failed.state.steps}}
    )  # nothing sent yet, as right after a start whose first command is still in the outbox
    decision = failed.feed(OperatorAction("abort", compensate=False, actor="bob"), T0 + 1)
    assert failed.state.status is SagaStatus.FAILED
    assert failed.state.reason == "aborted by bob"
    assert failed.state.wake_at is None
    assert sends(decision) == []


# -- the saga deadline ----------------------------------------------------------------------


def test_the_saga_deadline_before_the_pivot_compensates() -> None:
    saga = Saga()
    saga.reply_ok_until(RISK)
    assert saga.state.deadline == T0 + 120
    saga.tick(T0 + 120)  # the reply timeout passed long ago too: the deadline wins
    assert saga.state.status is SagaStatus.COMPENSATING
    assert saga.state.reason == "saga_deadline"
    assert saga.state.failed_step == RISK
    assert saga.state.steps[RISK].status is not StepStatus.PENDING
    assert saga.state.compensation_plan == (RISK, AUTHORIZE)


def test_the_saga_deadline_after_the_pivot_is_ignored() -> None:
    saga = Saga()
    capture = saga.reply_ok_until(CAPTURE)
    assert saga.state.wake_at == capture.deadline  # the deadline no longer wakes the saga
    saga.now = T0 + 500
    for _ in range(4):  # time out, resend, time out, resend
        saga.tick(max(saga.now, saga.state.wake_at or saga.now))
    assert saga.state.status is SagaStatus.RUNNING
    assert compensations(saga) == []
    saga.answer()
    assert saga.last.state.status is SagaStatus.COMPLETED


def test_a_tick_past_the_deadline_but_before_the_pivots_timeout_changes_nothing() -> None:
    saga = Saga()
    saga.now = T0 + 118
    capture = saga.reply_ok_until(CAPTURE)
    assert_ignored(saga, Tick(), "not_due", capture.deadline - 0.5)


# -- wake_at, events, determinism, backoff ---------------------------------------------------


def test_wake_at_is_set_while_waiting_and_none_when_finished() -> None:
    saga = Saga()
    assert saga.state.wake_at == min(saga.sent().deadline, T0 + 120)
    saga.answer(failure(saga.sent(), retriable=True))
    assert only(saga.state) is not None
    assert saga.state.wake_at == only(saga.state).due
    saga.tick()
    saga.reply_ok_until(CAPTURE)
    assert saga.state.wake_at == saga.sent().deadline
    saga.answer()
    assert saga.state.wake_at is None


def test_wake_at_is_the_earlier_of_the_saga_deadline_and_the_awaited_reply() -> None:
    saga = Saga()
    saga.now = T0 + 117
    command = saga.reply_ok_until(PCI)
    assert command.deadline > T0 + 120
    assert saga.state.wake_at == T0 + 120


def test_the_same_inputs_give_equal_decisions() -> None:
    def run() -> list[Decision]:
        saga = Saga()
        saga.answer(failure(saga.sent(), retriable=True))
        saga.tick()
        saga.reply_ok_until(PCI)
        saga.tick()
        saga.tick()
        saga.answer(failure(saga.sent(), retriable=False))
        while saga.state.status is SagaStatus.COMPENSATING:
            saga.answer()
        return saga.decisions

    assert run() == run()


def test_a_final_event_is_emitted_exactly_once_per_finish() -> None:
    saga = Saga()
    started = [e for e in saga.last.effects if isinstance(e, EmitEvent)]
    assert [(e.event.event, e.final) for e in started] == [("started", False)]
    saga.reply_ok_until(CAPTURE)
    saga.answer()
    saga.feed(ok(PAYMENT, saga.all_sends()[-1]))
    saga.tick(saga.now + 1_000)
    assert [f.event.event for f in saga.finals()] == ["completed"]


def test_retry_backoff_grows_and_is_capped_within_its_jitter() -> None:
    policy = RetryPolicy(initial_backoff_s=0.2, multiplier=2, max_backoff_s=2, jitter=0.2)
    assert policy.backoff_s(2, 0.5) == pytest.approx(0.2)
    assert policy.backoff_s(3, 0.5) == pytest.approx(0.4)
    assert policy.backoff_s(4, 0.5) == pytest.approx(0.8)
    assert policy.backoff_s(10, 0.5) == pytest.approx(2)
    assert policy.backoff_s(10, 0.0) == pytest.approx(1.6)
    assert policy.backoff_s(10, 0.999999) == pytest.approx(2.4, rel=1e-5)


def test_scheduled_retries_back_off_within_jitter_bounds() -> None:
    saga = a_failed_saga()
    waits = [
        only(d.state).due - d.state.updated_at
        for d in saga.decisions
        if d.ignored is None and only(d.state) and not only(d.state).sent
    ]
    assert len(waits) >= 19  # one before each attempt after the first
    for attempt, wait in enumerate(waits, start=2):
        base = min(5.0, 0.2 * 2 ** (attempt - 2))
        assert base * 0.8 <= wait <= base * 1.2
    assert max(waits) <= 5 * 1.2
    assert waits[3] > waits[0]


def test_jitter_spreads_the_retries_of_different_sagas() -> None:
    dues = set()
    for n in range(5):
        saga = Saga(saga_id=f"saga-{n}")
        saga.answer(failure(saga.sent(), retriable=True))
        assert only(saga.state) is not None
        dues.add(only(saga.state).due)
    assert len(dues) == 5


# -- one outcome per effect id, budgets in time (issue 9) -----------------------------------


RETRY_DECLINED = parse(
    {
        **PAYMENT.model_dump(mode="json", exclude={"steps"}),
        "steps": [
            step.model_dump(mode="json")
            if step.name != AUTHORIZE
            else {
                **step.model_dump(mode="json"),
                "action": {
                    **step.action.model_dump(mode="json"),
                    "retry": {
                        "max_attempts": 3,
                        "give_up_after_s": 0,
                        "retriable_reasons": ["busy"],
                    },
                },
            }
            for step in PAYMENT.steps
        ],
    }
)


def test_a_step_keeps_retrying_until_its_time_budget_is_spent_too() -> None:
    """Attempts alone ran out in an outage of a few seconds (finding 3)."""
    saga = Saga()
    policy = PAYMENT.step(AUTHORIZE).action.retry
    while saga.state.steps[AUTHORIZE].attempts <= policy.max_attempts + 1:
        saga.tick()  # timeouts, more of them than attempts, well within the time budget
    assert saga.state.status is SagaStatus.RUNNING
    assert saga.now - T0 < policy.give_up_after_s
    saga.answer()  # the outage ends: the late answer counts
    assert saga.state.steps[AUTHORIZE].status is StepStatus.SUCCEEDED


def test_a_timeout_of_a_command_that_never_left_the_outbox_costs_no_attempt() -> None:
    saga = Saga()
    first = saga.sent()
    unpublished = frozenset({command_message_id(first.effect_id, 1)})
    decision = saga.feed(Tick(unpublished=unpublished), first.deadline)
    waiting = only(saga.state)
    assert sends(decision) == []
    assert waiting is not None
    assert (waiting.attempt, waiting.sent) == (1, True)  # still waiting for attempt 1
    assert waiting.due == first.deadline + PAYMENT.step(AUTHORIZE).action.timeout_s
    assert timed_out_commands(saga.state, saga.now) == ()  # not due again yet
    assert timed_out_commands(saga.state, waiting.due) == (command_message_id(first.effect_id, 1),)


def test_a_retriable_refusal_is_final_for_its_effect_and_the_retry_is_a_new_effect() -> None:
    saga = Saga(RETRY_DECLINED)
    first = saga.sent()
    saga.answer(failure(first, retriable=False, reason="busy"))
    second = sends(saga.tick())[0]
    assert second.effect_id == effect_id("saga-1", AUTHORIZE, "forward", 1) != first.effect_id
    saga.feed(Tick(), second.deadline)  # a timeout: the same effect id again
    third = sends(saga.tick())[0]
    assert third.effect_id == second.effect_id
    saga.answer(ok(RETRY_DECLINED, third))
    saga.reply_ok_until(CAPTURE)
    saga.answer(failure(saga.sent(), retriable=False))  # the capture refused: compensate
    while saga.sent().step != AUTHORIZE:
        saga.answer()
    void = saga.sent()
    assert void.compensates == second.effect_id  # the effect that applied, not the refused one


def test_a_step_given_up_after_a_final_refusal_is_not_compensated() -> None:
    saga = Saga(RETRY_DECLINED)
    while saga.state.status is SagaStatus.RUNNING:
        waiting = only(saga.state)
        assert waiting is not None
        if waiting.sent:
            saga.answer(failure(saga.sent(), retriable=False, reason="busy"))
        else:
            saga.tick()
    assert saga.state.steps[AUTHORIZE].status is StepStatus.REJECTED
    assert saga.state.status is SagaStatus.COMPENSATED
    assert compensations(saga) == []


def test_the_saga_deadline_during_a_retry_after_a_refusal_compensates_nothing() -> None:
    saga = Saga(RETRY_DECLINED)
    saga.answer(failure(saga.sent(), retriable=False, reason="busy"))
    assert saga.state.deadline is not None
    saga.tick(saga.state.deadline)
    assert saga.state.steps[AUTHORIZE].status is StepStatus.REJECTED
    assert saga.state.status is SagaStatus.COMPENSATED


def test_an_hour_of_pivot_timeouts_adds_a_bounded_history() -> None:
    """One saga queued 363 captures and grew by 3 entries per retry in a 1-hour outage."""
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    before = sum(len(d.history) for d in saga.decisions)
    while saga.now < T0 + 3600:
        saga.tick()
    capture = saga.state.steps[CAPTURE]
    assert capture.attempts > 300
    entries = sum(len(d.history) for d in saga.decisions) - before
    assert entries < 40
    assert all(
        c.deadline - c_at <= PAYMENT.step(CAPTURE).action.timeout_s + 1e-6
        for c, c_at in ((c, d.state.updated_at) for d in saga.decisions for c in sends(d))
    )


def test_every_lifecycle_event_carries_the_idempotency_key() -> None:
    saga = Saga()
    saga.reply_ok_until(CAPTURE)
    saga.answer()
    events = [e for d in saga.decisions for e in d.effects if isinstance(e, EmitEvent)]
    assert [e.event.event for e in events] == ["started", "completed"]
    assert {e.event.idempotency_key for e in events} == {a_start().idempotency_key}


def test_a_command_stays_worth_handling_well_past_its_reply_timeout() -> None:
    """A backlog longer than the timeout must not make every retry arrive expired."""
    saga = Saga()
    first = saga.sent()
    timeout = PAYMENT.step(AUTHORIZE).action.timeout_s
    assert first.deadline == T0 + timeout
    assert first.expires_at - T0 >= max(4 * timeout, 30.0)
