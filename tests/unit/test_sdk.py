"""The worker SDK's pure parts: handler registry, message context, fault injection."""

from __future__ import annotations

import random
from typing import NoReturn

import pytest

from contracts.base import Reply
from contracts.envelope import Envelope
from contracts.payments import AssessRisk, ReleaseRiskExposure, RiskAssessed
from messaging.errors import StepRejected, TransientError
from messaging.settings import ParticipantSettings
from participants.sdk import Chaos, Handlers, MessageContext, handles


class Scorer:
    @handles(AssessRisk)
    async def assess(self, cmd: AssessRisk, ctx: MessageContext) -> RiskAssessed:
        return RiskAssessed(score=7)


def test_handlers_are_collected_from_marked_methods() -> None:
    handlers = Handlers.of(Scorer())
    assert list(handlers) == [AssessRisk.KIND]
    route = handlers.route(AssessRisk.KIND)
    assert route is not None
    assert route.command is AssessRisk
    assert handlers.route(ReleaseRiskExposure.KIND) is None


def test_one_handler_per_command() -> None:
    handlers = Handlers.of(Scorer())
    with pytest.raises(ValueError, match="already registered"):
        handlers.register(AssessRisk, Scorer().assess)


def test_context_carries_the_saga_position_and_trace_id() -> None:
    envelope = Envelope(
        kind=ReleaseRiskExposure.KIND, saga_id="s1", step="assess_risk", phase="compensate",
        effect_id="s1:assess_risk:compensate", compensates="s1:assess_risk:forward", attempt=3,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )  # fmt: skip
    ctx = MessageContext.of(envelope)
    assert (ctx.saga_id, ctx.phase, ctx.attempt) == ("s1", "compensate", 3)
    assert ctx.compensates == "s1:assess_risk:forward"
    assert ctx.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert MessageContext.of(envelope.model_copy(update={"traceparent": "junk"})).trace_id == ""


class Crashed(BaseException):
    pass


def crash(code: int) -> NoReturn:
    raise Crashed(code)


def chaos(**rates: float) -> Chaos:
    return Chaos(ParticipantSettings(**rates), random.Random(1), exit_process=crash)


async def test_no_faults_by_default() -> None:
    async def run() -> Reply:
        return RiskAssessed(score=1)

    assert await chaos().call(run, forward=True) == RiskAssessed(score=1)


async def test_injected_errors_and_refusals_happen_before_the_handler() -> None:
    ran: list[bool] = []

    async def run() -> Reply:
        ran.append(True)
        return RiskAssessed(score=1)

    with pytest.raises(TransientError):
        await chaos(error_rate=1.0).call(run, forward=False)
    with pytest.raises(StepRejected, match="injected_failure"):
        await chaos(fail_rate=1.0).call(run, forward=True)
    assert ran == []
    assert await chaos(fail_rate=1.0).call(run, forward=False) == RiskAssessed(score=1)


async def test_a_crash_happens_after_the_effect_and_before_the_reply() -> None:
    ran: list[bool] = []

    async def run() -> Reply:
        ran.append(True)
        return RiskAssessed(score=1)

    with pytest.raises(Crashed) as crashed:
        await chaos(crash_rate=1.0).call(run, forward=True)
    assert crashed.value.args == (137,)
    assert ran == [True]


async def test_rates_are_drawn_from_the_seeded_random() -> None:
    async def run() -> Reply:
        return RiskAssessed(score=1)

    async def outcomes(seed: int) -> list[str]:
        faulty = Chaos(ParticipantSettings(error_rate=0.5), random.Random(seed))
        got = []
        for _ in range(20):
            try:
                await faulty.call(run, forward=True)
                got.append("ok")
            except TransientError:
                got.append("error")
        return got

    first = await outcomes(3)
    assert first == await outcomes(3)
    assert "ok" in first
    assert "error" in first
