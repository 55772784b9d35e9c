"""Property tests of the pure engine against a simulated world that loses, repeats, delays
and reorders messages, and a tiny ledger that moves money the way the real participants do.

Every decision is checked against the saga invariants as it happens; every run ends with
the books checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contracts.base import StepFailed
from contracts.envelope import Phase
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.effects import (
    Decision,
    EmitEvent,
    Event,
    OperatorAction,
    ReplyReceived,
    SendCommand,
    Tick,
)
from orchestrator.core.engine import decide, effect_id, start
from orchestrator.core.state import SagaState, SagaStatus, StepStatus
from tests.support.sagas import parse, payment_data
from tests.unit.test_engine import NOTIFY, PAYMENT, REPLY_BODIES, T0, a_start


def _grouped(version: int, compensate: str, threshold: int) -> SagaDefinition:
    """Authorization and compliance at once, then a risk check only when the amount
    reaches ``threshold``, then the capture."""
    data = payment_data()
    steps = {step["name"]: step for step in data["steps"]}
    steps["assess_risk"]["when"] = f"input.amount.minor >= {threshold}"
    group = {"name": "hold_and_attest", "compensate": compensate,
             "steps": [steps["authorize_payment"], steps["check_compliance"]]}  # fmt: skip
    data["steps"] = [{"parallel": group}, steps["assess_risk"], steps["capture_transaction"]]
    return parse({**data, "version": version})


GROUPED = _grouped(11, "sequential", 1)  # the risk check runs (a_start is 12.50 EUR)
GROUPED_WAVE = _grouped(12, "parallel", 10**12)  # it is skipped; undo as one wave
DEFINITIONS = (PAYMENT, NOTIFY, GROUPED, GROUPED_WAVE)
Verdict = Literal["ok", "refuse", "tech"]
SAGA_ID = "saga-p"
AUTHORIZE_KIND = "payments.authorize_payment.v1"
CAPTURE_KIND = "payments.capture_transaction.v1"
VOID_KIND = "payments.void_authorization.v1"
GOOD_EVENTS = 400  # once the world behaves, every saga finishes within this many events
FINISHED = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED)


# -- the world: participants with a ledger ----------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a participant recorded for an effect id; replayed for every later delivery."""

    kind: str
    body: dict[str, Any]
    refusal: str | None = None


@dataclass
class Ledger:
    """Holds and captures, applied at most once per effect id, as the participants do."""

    holds: dict[str, str] = field(default_factory=dict)  # authorize effect id -> hold state
    captures: list[str] = field(default_factory=list)  # capture effect ids applied
    cancelled: set[str] = field(default_factory=set)  # forward effects undone before they ran
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def handle(
        self, definition: SagaDefinition, command: SendCommand, verdict: Verdict
    ) -> ReplyReceived:
        if verdict == "tech":  # the handler changed nothing
            return answer(command, Outcome(StepFailed.KIND, {}, "unavailable"), retriable=True)
        if command.effect_id in self.outcomes:
            return answer(command, self.outcomes[command.effect_id])
        if command.phase == "compensate":
            if verdict == "refuse":  # changed nothing, and final for this effect id
                return self.record(command, Outcome(StepFailed.KIND, {}, "not_now"))
            return self.record(command, self.undo(command))
        return self.forward(definition, command, verdict)

    def forward(
        self, definition: SagaDefinition, command: SendCommand, verdict: Verdict
    ) -> ReplyReceived:
        step = definition.step(command.step)
        if command.effect_id in self.cancelled:
            return self.record(command, Outcome(StepFailed.KIND, {}, "cancelled"))
        if verdict == "refuse" and step.kind != "retriable":  # nothing refuses after the pivot
            return self.record(command, Outcome(StepFailed.KIND, {}, "declined"))
        return self.record(command, self.apply(definition, command))

    def record(self, command: SendCommand, outcome: Outcome) -> ReplyReceived:
        self.outcomes[command.effect_id] = outcome
        return answer(command, outcome)

    def apply(self, definition: SagaDefinition, command: SendCommand) -> Outcome:
        step = definition.step(command.step)
        eid = command.effect_id
        if command.kind == AUTHORIZE_KIND:
            self.holds[eid] = "held"
            return Outcome(step.action.reply, {"hold_id": f"hold-{eid}"})
        if command.kind == CAPTURE_KIND:
            hold = str(command.body["hold_id"]).removeprefix("hold-")
            if self.holds.get(hold) != "held":
                return Outcome(StepFailed.KIND, {}, "hold_not_held")
            self.holds[hold] = "captured"
            self.captures.append(eid)
            return Outcome(step.action.reply, {"capture_id": f"cap-{eid}"})
        return Outcome(step.action.reply, REPLY_BODIES[step.action.reply])

    def undo(self, command: SendCommand) -> Outcome:
        forward = command.compensates
        if forward not in self.outcomes:  # must succeed when the forward never ran
            self.cancelled.add(forward)
        reply = _compensation_reply(command.kind)
        if command.kind != VOID_KIND:
            return Outcome(reply, REPLY_BODIES[reply])
        released = self.holds.get(forward) == "held"
        if released:
            self.holds[forward] = "released"
        return Outcome(reply, {"released": released})


def _compensation_reply(command_kind: str) -> str:
    for definition in (PAYMENT, NOTIFY):
        for step in definition.steps:
            if step.compensation is not None and step.compensation.command == command_kind:
                return step.compensation.reply
    raise AssertionError(command_kind)


def answer(command: SendCommand, outcome: Outcome, *, retriable: bool = False) -> ReplyReceived:
    return ReplyReceived(
        command.step,
        command.phase,
        command.attempt,
        outcome.kind,
        outcome.body,
        outcome.refusal,
        retriable,
        sender=command.participant,
    )


# -- the checker: invariants after every decision ---------------------------------------------


@dataclass
class Checker:
    definition: SagaDefinition
    operators: bool = False  # operator actions may restart a failed saga
    # the participants' recorded outcomes: a new effect id only after a final answer
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    effect_ids: dict[tuple[str, Phase], str] = field(default_factory=dict)
    every_effect_id: set[str] = field(default_factory=set)
    last_attempt: dict[tuple[str, Phase], int] = field(default_factory=dict)
    forward_sent: set[str] = field(default_factory=set)
    undo_order: list[str] = field(default_factory=list)
    pivot_sent: bool = False
    finals: int = 0
    finishes: int = 0

    @property
    def pivot(self) -> str | None:
        index = self.definition.pivot_index
        return None if index is None else self.definition.steps[index].name

    def check(self, before: SagaState | None, decision: Decision) -> None:
        after = decision.state
        if decision.ignored is not None:  # (7) nothing to write, nothing to send
            assert decision.effects == ()
            assert decision.history == ()
            assert decision.state == before
            return
        if before is not None and before.status in FINISHED and not self.operators:
            raise AssertionError(f"a finished saga changed: {decision}")
        for command in (e for e in decision.effects if isinstance(e, SendCommand)):
            self.check_send(before, after, command)
        self.check_status(before, after, decision)
        self.check_plan(before, after)

    def check_send(self, before: SagaState | None, after: SagaState, command: SendCommand) -> None:
        # (1) nothing is sent by a finished saga, nor by the decision that finishes it; with an
        # operator about, only a failed saga may be restarted
        assert after.status not in FINISHED
        restartable = (SagaStatus.FAILED,) if self.operators else ()
        assert before is None or before.status not in FINISHED or before.status in restartable
        # (5) the same effect id on every attempt, until that effect got a final answer: only
        # then a new one, of the next generation (docs/protocol.md)
        key = (command.step, command.phase)
        record = after.steps[command.step]
        generation = (
            record.generation if command.phase == "forward" else record.compensation_generation
        )
        assert command.effect_id == effect_id(SAGA_ID, command.step, command.phase, generation)
        previous = self.effect_ids.get(key, command.effect_id)
        if previous != command.effect_id:
            assert self.outcomes[previous].refusal is not None
            assert command.effect_id not in self.every_effect_id
        self.effect_ids[key] = command.effect_id
        self.every_effect_id.add(command.effect_id)
        # (6) attempts only increase
        assert command.attempt > self.last_attempt.get(key, 0)
        self.last_attempt[key] = command.attempt
        if command.phase == "forward":
            self.forward_sent.add(command.step)
            self.pivot_sent = self.pivot_sent or command.step == self.pivot
            assert command.compensates == ""
            return
        # (2) only compensatable steps that were sent forward, in the plan's order
        assert self.definition.step(command.step).kind == "compensatable"
        assert command.step in self.forward_sent
        assert command.compensates == self.effect_ids[(command.step, "forward")]
        if command.step not in self.undo_order:
            self.undo_order.append(command.step)
        assert tuple(self.undo_order) == after.compensation_plan[: len(self.undo_order)]
        # (4) past the pivot only a refusal of the pivot itself leads to compensation
        if self.pivot_sent:
            assert self.pivot is not None
            assert after.steps[self.pivot].status is StepStatus.REJECTED

    def check_plan(self, before: SagaState | None, after: SagaState) -> None:
        """(2) the undo list is fixed when compensation begins, from the recorded statuses."""
        if before is None or before.status is not SagaStatus.RUNNING:
            return
        if after.status not in (SagaStatus.COMPENSATING, SagaStatus.COMPENSATED):
            return
        plan = after.compensation_plan
        stages = [self.definition.stage_index(name) for name in plan]
        assert stages == sorted(stages, reverse=True)  # stages undone in reverse
        for step in self.definition.steps:
            if step.kind != "compensatable":
                assert step.name not in plan
            elif step.name not in self.forward_sent:
                assert step.name not in plan
                assert after.steps[step.name].status in (StepStatus.PENDING, StepStatus.SKIPPED)
            else:
                rejected = after.steps[step.name].status is StepStatus.REJECTED
                assert (step.name in plan) != rejected

    def check_status(self, before: SagaState | None, after: SagaState, decision: Decision) -> None:
        finals = [e for e in decision.effects if isinstance(e, EmitEvent) and e.final]
        was_finished = before is not None and before.status in FINISHED
        if after.status in FINISHED and not was_finished:
            assert len(finals) == 1
            assert finals[0].event.status == after.status.value
            self.finishes += 1
        else:
            assert len(finals) <= 1
            assert not finals or after.status in FINISHED
        self.finals += len(finals)
        # wake_at: set whenever the saga waits for something, None when it is finished
        if after.status in FINISHED:
            assert after.wake_at is None
            assert after.waiting == ()
        else:
            assert after.waiting
            assert after.wake_at is not None
            assert after.wake_at <= min(w.due for w in after.waiting)
        assert len({w.step for w in after.waiting}) == len(after.waiting)  # one wait a step
        if after.status is SagaStatus.COMPLETED:  # (3)
            done = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
            assert all(r.status in done for r in after.steps.values())
            assert self.undo_order == []
        if self.pivot is not None:  # (4) the pivot's outcome is never given up on
            pivot = after.steps[self.pivot]
            assert pivot.status is not StepStatus.UNKNOWN
            if self.pivot_sent and after.status is SagaStatus.COMPENSATED:
                assert pivot.status is StepStatus.REJECTED
        if before is not None:  # (6) in the state too: attempts of a wait only increase
            earlier = {(w.step, w.phase): w.attempt for w in before.waiting}
            for w in after.waiting:
                assert w.attempt >= earlier.get((w.step, w.phase), 0)


# -- driving the engine -------------------------------------------------------------------


@dataclass
class World:
    definition: SagaDefinition
    checker: Checker
    ledger: Ledger = field(default_factory=Ledger)
    inflight: list[SendCommand] = field(default_factory=list)
    replies: list[ReplyReceived] = field(default_factory=list)
    now: float = T0
    state: SagaState | None = None

    def __post_init__(self) -> None:
        self.checker.outcomes = self.ledger.outcomes

    def begin(self) -> None:
        decision = start(self.definition, SAGA_ID, a_start(), self.now)
        self.checker.check(None, decision)
        self.accept(decision)

    def feed(self, event: Event) -> Decision:
        assert self.state is not None
        before = self.state
        decision = decide(self.definition, before, event, self.now)
        self.checker.check(before, decision)
        self.accept(decision)
        return decision

    def accept(self, decision: Decision) -> None:
        if decision.ignored is None:  # the caller keeps the old state otherwise
            self.state = decision.state
            self.inflight += [e for e in decision.effects if isinstance(e, SendCommand)]

    @property
    def status(self) -> SagaStatus:
        assert self.state is not None
        return self.state.status

    def tick(self, extra: float = 0.0) -> None:
        assert self.state is not None
        if self.state.wake_at is not None:
            self.now = max(self.now, self.state.wake_at)
        self.now += extra
        self.feed(Tick())

    def deliver(self, index: int, verdict: Verdict, *, keep: bool, drop_reply: bool) -> None:
        command = self.inflight[index] if keep else self.inflight.pop(index)
        reply = self.ledger.handle(self.definition, command, verdict)
        if not drop_reply:
            self.replies.append(reply)

    def behave(self) -> None:
        """The world answers everything promptly and successfully from now on."""
        for _ in range(GOOD_EVENTS):
            if self.status in FINISHED:
                return
            if self.replies:
                self.now += 0.01
                self.feed(self.replies.pop(0))
            elif self.inflight:
                self.deliver(0, "ok", keep=False, drop_reply=False)
            else:
                self.tick()
        raise AssertionError(f"not finished after {GOOD_EVENTS} good events: {self.state}")

    def drain(self) -> None:
        """Late deliveries of everything still in flight: they must change nothing."""
        while self.inflight or self.replies:
            if self.inflight:
                self.deliver(0, "ok", keep=False, drop_reply=False)
            else:
                assert self.feed(self.replies.pop(0)).ignored is not None


ACTIONS = ("deliver", "deliver", "deliver", "reply", "reply", "reply", "tick", "lose", "wait")
OPERATOR_ACTIONS = (
    OperatorAction("retry"),
    OperatorAction("resume"),
    OperatorAction("abort", compensate=True),
    OperatorAction("abort", compensate=False),
)


def misbehave(world: World, data: st.DataObject, events: int, *, operators: bool = False) -> None:
    """Up to ``events`` events chosen by hypothesis: any answer, lost, repeated, late, reordered."""
    actions = (*ACTIONS, "operator") if operators else ACTIONS
    for _ in range(events):
        if world.status in FINISHED and not operators:
            return
        action = data.draw(st.sampled_from(actions))
        world.now += data.draw(st.integers(0, 20)) / 10
        if action == "deliver" and world.inflight:
            world.deliver(
                data.draw(st.integers(0, len(world.inflight) - 1)),
                data.draw(st.sampled_from(("ok", "ok", "refuse", "tech"))),
                keep=data.draw(st.booleans()),  # delivered again later: a duplicate
                drop_reply=data.draw(st.integers(0, 4)) == 0,
            )
        elif action == "reply" and world.replies:
            index = data.draw(st.integers(0, len(world.replies) - 1))
            reply = world.replies[index] if data.draw(st.booleans()) else world.replies.pop(index)
            world.feed(reply)
        elif action == "lose" and world.inflight:
            world.inflight.pop(data.draw(st.integers(0, len(world.inflight) - 1)))
        elif action == "operator":
            world.feed(data.draw(st.sampled_from(OPERATOR_ACTIONS)))
        elif action == "tick" and world.status not in FINISHED:
            # mostly just at wake_at; sometimes long after, past the saga deadline
            world.tick(data.draw(st.sampled_from((0.0, 0.0, 0.0, 0.5, 40.0, 130.0))))


def check_books(world: World) -> None:
    """(9) completed: captured exactly once, its hold consumed. compensated: no money moved."""
    ledger = world.ledger
    state = world.state
    assert state is not None
    event(f"{world.definition.name}: {state.status.value}")  # --hypothesis-show-statistics
    event(f"reason: {(state.reason or '-').split(':')[0]}")
    hold = effect_id(SAGA_ID, "authorize_payment", "forward")
    assert len(ledger.captures) <= 1
    if world.status is SagaStatus.COMPLETED:
        assert ledger.captures == [effect_id(SAGA_ID, "capture_transaction", "forward")]
        assert ledger.holds[hold] == "captured"
    elif world.status is SagaStatus.COMPENSATED:
        assert ledger.captures == []
        assert "held" not in ledger.holds.values()


def check_outcome(world: World) -> None:
    """(8) completed or compensated, or failed only when a compensation ran out of budget."""
    state = world.state
    assert state is not None
    if state.status is SagaStatus.FAILED:
        assert state.reason is not None
        assert state.reason.startswith("compensation failed")
        assert state.failed_step is not None
        record = state.steps[state.failed_step]
        assert record.status is StepStatus.COMPENSATION_FAILED
        compensation = world.definition.step(state.failed_step).compensation
        assert compensation is not None
        assert record.compensation_attempts >= compensation.retry.max_attempts
    else:
        assert state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)
    assert world.checker.finishes == 1
    assert world.checker.finals == 1


PROFILE = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROFILE
@given(data=st.data(), definition=st.sampled_from(DEFINITIONS))
def test_any_misbehaving_world_ends_in_a_consistent_saga(
    data: st.DataObject, definition: SagaDefinition
) -> None:
    world = World(definition, Checker(definition))
    world.begin()
    misbehave(world, data, data.draw(st.integers(0, 80)))
    world.behave()
    check_outcome(world)
    world.drain()
    check_books(world)


@PROFILE
@given(data=st.data())
def test_a_world_that_only_fails_technically_or_times_out_still_finishes(
    data: st.DataObject,
) -> None:
    """Many more bad events than any retry budget before the pivot."""
    world = World(PAYMENT, Checker(PAYMENT))
    world.begin()
    for _ in range(data.draw(st.integers(0, 200))):
        if world.status in FINISHED:
            break
        fail_next = data.draw(st.booleans())
        if world.inflight and fail_next:
            world.deliver(0, "tech", keep=False, drop_reply=data.draw(st.booleans()))
        elif world.replies:
            world.feed(world.replies.pop(0))
        else:
            world.tick()
    world.behave()
    check_outcome(world)
    world.drain()
    check_books(world)


@settings(PROFILE, max_examples=200)
@given(data=st.data(), definition=st.sampled_from(DEFINITIONS))
def test_operator_actions_never_break_the_saga_invariants(
    data: st.DataObject, definition: SagaDefinition
) -> None:
    world = World(definition, Checker(definition, operators=True))
    world.begin()
    misbehave(world, data, data.draw(st.integers(0, 80)), operators=True)
    if world.status is not SagaStatus.FAILED:  # a failed saga waits for an operator
        world.behave()
    world.drain()
    check_books(world)
