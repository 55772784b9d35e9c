"""The engine's parallel groups and conditions, one rule per test."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from contracts.compiler import load_contracts
from contracts.registry import ContractRegistry
from orchestrator.core.definition import SagaDefinition, parse_definition
from orchestrator.core.effects import Decision, OperatorAction, ReplyReceived, SendCommand, Tick
from orchestrator.core.engine import decide, start
from orchestrator.core.engine.explore import explore
from orchestrator.core.state import SagaState, SagaStatus, StepStatus

ROOT = Path(__file__).resolve().parents[2]
PAYMENT = ROOT / "sagas" / "payment"
REGISTRY = ContractRegistry(load_contracts(PAYMENT / "contracts"))
BASE: dict[str, Any] = yaml.safe_load((PAYMENT / "definitions" / "payment.v1.yaml").read_text())
AUTHORIZE, RISK, PCI, CAPTURE = (
    "authorize_payment", "assess_risk", "check_compliance", "capture_transaction"
)  # fmt: skip
BODIES = {
    AUTHORIZE: {"hold_id": "hold-1"},
    RISK: {"score": 10},
    PCI: {"attestation_id": "att-1"},
    CAPTURE: {"capture_id": "cap-1"},
}
T0 = 1_000.0


def _grouped(
    compensate: str = "sequential", when: str = "input.amount.minor >= 1000"
) -> SagaDefinition:
    """Authorize and check compliance at once, then a conditional risk check, then capture."""
    data = copy.deepcopy(BASE)
    steps = {s["name"]: s for s in data["steps"]}
    steps[RISK]["when"] = when
    group = {"parallel": {"name": "hold_and_attest", "compensate": compensate,
                          "steps": [steps[AUTHORIZE], steps[PCI]]}}  # fmt: skip
    data["steps"] = [group, steps[RISK], steps[CAPTURE]]
    data["version"] = 7
    return parse_definition(data, REGISTRY)


def _begin(definition: SagaDefinition, minor: int = 5_000) -> Decision:
    model = REGISTRY.require(definition.trigger)
    message = model.model_validate({
        "idempotency_key": "k-1", "account_id": "acct-1", "merchant_id": "m-1",
        "amount": {"minor": minor, "currency": "EUR"}, "card_token": "tok_abcdefgh12",
    })  # fmt: skip
    return start(definition, "saga-1", message, T0)


def _sent(decision: Decision) -> list[tuple[str, str]]:
    return [(e.step, e.phase) for e in decision.effects if isinstance(e, SendCommand)]


def _answer(
    definition: SagaDefinition, state: SagaState, step: str, *, phase: str = "forward",
    reason: str | None = None, now: float = T0 + 1,
) -> Decision:  # fmt: skip
    waiting = next(w for w in state.waiting if w.step == step)
    action = (
        definition.step(step).action if phase == "forward" else definition.step(step).compensation
    )
    assert action is not None
    body = BODIES[step] if reason is None and phase == "forward" else {}
    kind = action.reply if reason is None else "baton.step_failed.v1"
    if reason is None and phase == "compensate":
        body = {"released": True} if step != PCI else {"revoked": True}
    reply = ReplyReceived(step, phase, waiting.attempt, kind, body, reason,  # type: ignore[arg-type]
                          sender=definition.step(step).participant)  # fmt: skip
    return decide(definition, state, reply, now)


def test_a_group_sends_every_branch_at_once() -> None:
    decision = _begin(_grouped())
    assert _sent(decision) == [(AUTHORIZE, "forward"), (PCI, "forward")]
    assert {w.step for w in decision.state.waiting} == {AUTHORIZE, PCI}


def test_the_next_stage_waits_for_every_branch() -> None:
    definition = _grouped()
    first = _answer(definition, _begin(definition).state, PCI)
    assert _sent(first) == []
    second = _answer(definition, first.state, AUTHORIZE, now=T0 + 2)
    assert _sent(second) == [(RISK, "forward")]


def test_a_step_whose_condition_fails_is_skipped() -> None:
    definition = _grouped()
    state = _begin(definition, minor=500).state
    state = _answer(definition, state, AUTHORIZE).state
    decision = _answer(definition, state, PCI)
    assert decision.state.steps[RISK].status is StepStatus.SKIPPED
    assert _sent(decision) == [(CAPTURE, "forward")]
    assert any(entry.what == "skipped" for entry in decision.history)


def test_a_refused_branch_interrupts_the_other_and_undoes_it_first() -> None:
    definition = _grouped()
    state = _begin(definition).state
    decision = _answer(definition, state, PCI, reason="not_compliant")
    assert decision.state.status is SagaStatus.COMPENSATING
    # interrupted while in flight: it may have applied, so it is undone at once
    assert decision.state.steps[AUTHORIZE].status is StepStatus.COMPENSATING
    assert decision.state.steps[AUTHORIZE].error == "not_compliant"
    assert decision.state.steps[PCI].status is StepStatus.REJECTED  # took no effect
    assert decision.state.compensation_plan == (AUTHORIZE,)
    assert _sent(decision) == [(AUTHORIZE, "compensate")]


def test_undo_runs_in_reverse_order_of_completion() -> None:
    definition = _grouped()
    state = _begin(definition).state
    state = _answer(definition, state, PCI, now=T0 + 1).state
    state = _answer(definition, state, AUTHORIZE, now=T0 + 2).state
    decision = _answer(definition, state, RISK, reason="too_risky", now=T0 + 3)
    assert decision.state.compensation_plan == (AUTHORIZE, PCI)
    assert _sent(decision) == [(AUTHORIZE, "compensate")]
    done = _answer(definition, decision.state, AUTHORIZE, phase="compensate", now=T0 + 4)
    assert _sent(done) == [(PCI, "compensate")]


def test_parallel_compensation_sends_a_wave_and_waits_for_all_of_it() -> None:
    definition = _grouped(compensate="parallel")
    state = _begin(definition).state
    state = _answer(definition, state, PCI).state
    state = _answer(definition, state, AUTHORIZE).state
    decision = _answer(definition, state, RISK, reason="too_risky")
    assert sorted(_sent(decision)) == [(AUTHORIZE, "compensate"), (PCI, "compensate")]
    half = _answer(definition, decision.state, PCI, phase="compensate")
    assert half.state.status is SagaStatus.COMPENSATING
    assert _sent(half) == []
    done = _answer(definition, half.state, AUTHORIZE, phase="compensate")
    assert done.state.status is SagaStatus.COMPENSATED


def test_one_tick_handles_every_due_branch() -> None:
    definition = _grouped()
    state = _begin(definition).state
    due = max(w.due for w in state.waiting)
    decision = decide(definition, state, Tick(), due)
    assert decision.ignored is None
    assert {w.step for w in decision.state.waiting if not w.sent} == {AUTHORIZE, PCI}


def test_resume_sends_every_awaited_branch_again() -> None:
    definition = _grouped()
    state = _begin(definition).state
    decision = decide(definition, state, OperatorAction("resume"), T0 + 1)
    assert sorted(_sent(decision)) == [(AUTHORIZE, "forward"), (PCI, "forward")]
    assert {w.attempt for w in decision.state.waiting} == {2}


def test_a_state_stored_with_one_waiting_still_loads() -> None:
    state = _begin(_grouped()).state
    data = state.model_dump(mode="json")
    data["waiting"] = data["waiting"][0]
    assert SagaState.model_validate(data).waiting == state.waiting[:1]
    data["waiting"] = None
    assert SagaState.model_validate(data).waiting == ()


def test_grouped_and_conditional_definitions_are_safe() -> None:
    for compensate in ("sequential", "parallel"):
        proof = explore(_grouped(compensate))
        assert proof.safe, proof.violation
        assert proof.variants == 2
