"""The worker SDK without a broker: handlers, context, fault injection, and the protocol
(``Responder``) on the in-memory inbox."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import pytest
import redis.exceptions

import baton_sdk
from baton_sdk import (
    Chaos,
    Claim,
    DeadLetter,
    Drop,
    Handlers,
    MemoryInbox,
    MessageContext,
    Outcome,
    Publish,
    Redeliver,
    Responder,
    Verdict,
    handles,
)
from contracts.base import Reply, StepFailed
from contracts.envelope import H_KEY_ID, H_SIGNATURE, H_SIGNER, Envelope, Phase
from contracts.money import Money
from messaging.errors import StepRejected, TransientError
from messaging.settings import ParticipantSettings
from messaging.transport.codec import Wire, encode
from messaging.trust.signing import KeySet
from participants.payments.contracts import (
    AssessRisk,
    ReleaseRiskExposure,
    RiskAssessed,
    RiskExposureReleased,
    payment_contracts,
)


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


# -- the protocol, without AMQP ---------------------------------------------------------------

EFFECT = "effect-1"
KEYS = KeySet.generate(["orchestrator", "risk", "cli"])  # commands are signed as deployed
ASSESS = AssessRisk(account_id="alice", merchant_id="shop", amount=Money(minor=100, currency="EUR"))
SCORED = RiskAssessed(score=7)

Body = Callable[[Any, MessageContext], Awaitable[Reply]]


def wire(
    body: AssessRisk | ReleaseRiskExposure = ASSESS,
    *,
    attempt: int = 1,
    deadline: float | None = None,
    phase: Phase = "forward",
) -> Wire:
    """A command as the orchestrator sends it; a compensation undoes ``EFFECT``."""
    envelope = Envelope(
        kind=body.KIND, saga_id="s1", saga="payment", step="assess_risk", phase=phase,
        effect_id=EFFECT if phase == "forward" else "effect-undo", attempt=attempt,
        compensates=EFFECT if phase == "compensate" else "", deadline=deadline,
    )  # fmt: skip
    return KEYS.keyring("orchestrator").sign(encode(envelope, body))


def responder(
    assess: Body,
    inbox: MemoryInbox | None = None,
    *,
    release: Body | None = None,
    clock: Callable[[], float] = lambda: 1_000.0,
    **settings: Any,
) -> Responder:
    handlers = Handlers(payment_contracts())  # as the risk service: knows every payment kind
    handlers.register(AssessRisk, assess)
    if release is not None:
        handlers.register(ReleaseRiskExposure, release)
    return Responder(
        handlers, inbox or MemoryInbox(), ParticipantSettings(**settings),
        keyring=KEYS.keyring("risk"), participant="risk", rng=random.Random(1), clock=clock,
    )  # fmt: skip


async def verdict(of: Responder, message: Wire) -> Verdict:
    return (await of.handle(message))[1]


async def scored(cmd: AssessRisk, ctx: MessageContext) -> Reply:
    return SCORED


def test_the_package_exports_what_it_defines() -> None:
    for name in baton_sdk.__all__:
        assert hasattr(baton_sdk, name), name
    public = {n for n in vars(baton_sdk) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(baton_sdk, n)).__name__ == "module"}
    assert public - modules == set(baton_sdk.__all__)


async def test_concurrent_duplicates_never_run_the_handler_in_parallel() -> None:
    running, overlap, calls = 0, asyncio.Event(), []

    async def assess(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        nonlocal running
        running += 1
        calls.append(ctx.attempt)
        if running > 1:
            overlap.set()
        try:  # a parallel run of this effect would set ``overlap`` while this one waits
            await asyncio.wait_for(overlap.wait(), 0.2)
        except TimeoutError:
            pass
        finally:
            running -= 1
        return RiskAssessed(score=ctx.attempt)

    risk = responder(assess)
    both = await asyncio.gather(*(verdict(risk, wire(attempt=n)) for n in (1, 2)))
    assert not overlap.is_set()
    assert len(calls) == 1
    assert [v.reply for v in both if isinstance(v, Publish)] == [RiskAssessed(score=calls[0])] * 2
    assert sorted(v.outcome for v in both) == sorted([Outcome.OK, Outcome.DUPLICATE])


async def test_a_refusal_is_recorded_and_answered_again() -> None:
    calls: list[int] = []

    async def refuse(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        calls.append(ctx.attempt)
        raise StepRejected("risk_too_high", "score 99")

    risk = responder(refuse)
    first = await verdict(risk, wire(attempt=1))
    again = await verdict(risk, wire(attempt=2))
    refused = StepFailed(reason="risk_too_high", retriable=False, detail="score 99")
    assert first == Publish(refused, Outcome.REJECTED)
    assert again == Publish(refused, Outcome.DUPLICATE)
    assert calls == [1]


async def test_an_expired_command_is_dropped_unless_it_was_answered_before() -> None:
    calls: list[int] = []

    async def assess(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        calls.append(ctx.attempt)
        return SCORED

    now = [1_000.0]
    risk = responder(assess, clock=lambda: now[0])
    assert await verdict(risk, wire(deadline=999.0)) == Drop(Outcome.EXPIRED)
    assert calls == []
    assert await verdict(risk, wire(attempt=2, deadline=1_001.0)) == Publish(SCORED, Outcome.OK)
    now[0] = 2_000.0
    stale = await verdict(risk, wire(attempt=3, deadline=1_001.0))
    assert stale == Publish(SCORED, Outcome.DUPLICATE)  # the stored outcome, never the handler
    assert calls == [2]


@pytest.mark.parametrize(
    "error",
    [
        TransientError("ledger database unreachable"),
        redis.exceptions.ConnectionError("connection reset"),
        redis.exceptions.TimeoutError("timed out"),
    ],
)
async def test_an_infrastructure_error_is_redelivered_never_answered(error: Exception) -> None:
    calls: list[int] = []

    async def flaky(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise error
        return SCORED

    inbox = MemoryInbox()
    risk = responder(flaky, inbox)
    first = await verdict(risk, wire())
    assert isinstance(first, Redeliver)
    assert first.outcome is Outcome.RETRY
    assert 0.5 <= first.after_s <= 2.0
    assert await inbox.stored(EFFECT) is None  # nothing recorded, and the lease was released
    assert await verdict(risk, wire()) == Publish(SCORED, Outcome.OK)
    assert calls == [1, 1]


class BrokenInbox(MemoryInbox):
    """An inbox whose Redis is away for the first ``failures`` calls of ``method``."""

    def __init__(self, method: str, failures: int = 1) -> None:
        super().__init__()
        self.failures = {method: failures}

    def _fail(self, method: str) -> None:
        if self.failures.get(method, 0) > 0:
            self.failures[method] -= 1
            raise redis.exceptions.ConnectionError(f"{method}: connection refused")

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        self._fail("claim")
        return await super().claim(effect_id, compensates=compensates, lease_s=lease_s)

    async def record(self, claim: Claim, outcome: Reply, *, bury: bool = False) -> Reply:
        self._fail("record")
        return await super().record(claim, outcome, bury=bury)


class WatchedInbox(MemoryInbox):
    """Tells the test when a delivery found its subject busy."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = asyncio.Event()

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        claim = await super().claim(effect_id, compensates=compensates, lease_s=lease_s)
        if claim.busy:
            self.busy.set()
        return claim


@pytest.mark.parametrize("method", ["claim", "record"])
async def test_an_inbox_failure_is_redelivered_never_answered(method: str) -> None:
    inbox = BrokenInbox(method)
    risk = responder(scored, inbox)
    first = await verdict(risk, wire())
    assert isinstance(first, Redeliver)
    assert first.error == "ConnectionError"
    assert await verdict(risk, wire()) == Publish(SCORED, Outcome.OK)


async def test_a_bug_answers_a_retriable_internal_error_and_records_nothing() -> None:
    async def buggy(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        raise KeyError("score")

    inbox = MemoryInbox()
    answer = await verdict(responder(buggy, inbox), wire())
    assert isinstance(answer, Publish)
    assert answer.outcome is Outcome.ERROR
    assert isinstance(answer.reply, StepFailed)
    assert (answer.reply.reason, answer.reply.retriable) == ("internal_error", True)
    assert await inbox.stored(EFFECT) is None
    assert not (await inbox.claim(EFFECT, lease_s=1)).busy  # the lease was released


async def test_a_busy_subject_is_waited_for_then_redelivered() -> None:
    inbox = MemoryInbox()
    await inbox.claim(EFFECT, lease_s=60)  # another delivery, alive, holds the effect
    risk = responder(scored, inbox, lease_s=0.2)
    assert await verdict(risk, wire()) == Redeliver(0.0, Outcome.BUSY)


async def test_a_dead_holders_lease_is_taken_over_once_it_expires() -> None:
    inbox = MemoryInbox()
    await inbox.claim(EFFECT, lease_s=0.2)  # its holder died: never recorded, never released
    risk = responder(scored, inbox, lease_s=1.0)
    assert await verdict(risk, wire()) == Publish(SCORED, Outcome.OK)


async def test_a_compensation_waits_for_its_forward_handler() -> None:
    entered, go, order = asyncio.Event(), asyncio.Event(), []

    async def assess(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        entered.set()
        await go.wait()
        order.append("assessed")
        return SCORED

    async def release(cmd: ReleaseRiskExposure, ctx: MessageContext) -> Reply:
        order.append("released")
        return RiskExposureReleased(released=True)

    inbox = WatchedInbox()
    risk = responder(assess, inbox, release=release)
    forward = asyncio.create_task(verdict(risk, wire()))
    await entered.wait()
    undo = asyncio.create_task(verdict(risk, wire(ReleaseRiskExposure(), phase="compensate")))
    await asyncio.wait_for(inbox.busy.wait(), 5)  # the compensation found the lease taken
    assert not undo.done()
    go.set()
    assert await forward == Publish(SCORED, Outcome.OK)
    assert await undo == Publish(RiskExposureReleased(released=True), Outcome.OK)
    assert order == ["assessed", "released"]


async def test_a_forward_command_after_its_compensation_is_cancelled() -> None:
    async def release(cmd: ReleaseRiskExposure, ctx: MessageContext) -> Reply:
        return RiskExposureReleased(released=False)

    risk = responder(scored, release=release)
    await verdict(risk, wire(ReleaseRiskExposure(), phase="compensate"))
    cancelled = StepFailed(reason="cancelled", retriable=False)
    assert await verdict(risk, wire()) == Publish(cancelled, Outcome.CANCELLED)
    assert await verdict(risk, wire(attempt=2)) == Publish(cancelled, Outcome.DUPLICATE)


async def test_the_heartbeat_keeps_a_slow_handlers_lease() -> None:
    entered, go = asyncio.Event(), asyncio.Event()

    async def slow(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        entered.set()
        await go.wait()
        return SCORED

    inbox = MemoryInbox()
    risk = responder(slow, inbox, lease_s=0.3)
    task = asyncio.create_task(verdict(risk, wire()))
    await entered.wait()
    await asyncio.sleep(0.9)  # three lease times: only the heartbeat keeps the lease alive
    assert (await inbox.claim(EFFECT, lease_s=1)).busy
    go.set()
    assert await task == Publish(SCORED, Outcome.OK)


class RenewalsFail(MemoryInbox):
    """The store went away after the claim: no renewal gets through."""

    claimed_at = 0.0

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        self.claimed_at = time.monotonic()  # the lease runs from (at the latest) now
        return await super().claim(effect_id, compensates=compensates, lease_s=lease_s)

    async def renew(self, claim: Claim, *, lease_s: float) -> bool:
        raise redis.exceptions.ConnectionError("store away")


async def test_a_handler_whose_lease_cannot_be_renewed_is_stopped_before_it_expires() -> None:
    """The simulation (seed 4744) ran a retry beside a slow handler whose lease lapsed
    during a store outage; the handler must stop first, and the command come back.

    The stop is timed where it happens, against the claim's own time, with a lease long
    enough that a loaded machine's scheduling delay does not eat the safety margin."""
    stopped_at: list[float] = []
    lease_s = 2.0

    async def slow(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        try:
            await asyncio.sleep(60)
        finally:
            stopped_at.append(time.monotonic())
        return SCORED

    inbox = RenewalsFail()
    risk = responder(slow, inbox, lease_s=lease_s)
    outcome = await verdict(risk, wire())
    assert isinstance(outcome, Redeliver)
    assert outcome.outcome is Outcome.RETRY
    assert len(stopped_at) == 1
    assert stopped_at[0] < inbox.claimed_at + lease_s  # stopped while its lease still held


async def test_undecodable_and_foreign_commands_are_dead_lettered() -> None:
    risk = responder(scored)
    orchestrator = KEYS.keyring("orchestrator")
    _, garbage = await risk.handle(orchestrator.sign(Wire(b"{}", AssessRisk.KIND, headers={})))
    assert isinstance(garbage, DeadLetter)
    assert garbage.code == "missing_header"
    accepted, foreign = await risk.handle(wire(ReleaseRiskExposure(), phase="compensate"))
    assert accepted is None
    assert isinstance(foreign, DeadLetter)
    assert foreign.code == "no_handler"


@pytest.mark.parametrize(
    ("signer", "code"),
    [(None, "unsigned"), ("cli", "wrong_sender"), ("risk", "wrong_sender"),
     ("mallory", "unknown_key")],
)  # fmt: skip
async def test_only_commands_signed_by_the_orchestrator_run(signer: str | None, code: str) -> None:
    """Unsigned, unknown or another service's signature: dead-lettered, the handler never runs."""
    ran: list[str] = []

    async def handler(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        ran.append(ctx.effect_id)
        return SCORED

    inbox = MemoryInbox()
    risk = responder(handler, inbox)
    command = wire()
    signature = (H_SIGNER, H_KEY_ID, H_SIGNATURE)
    headers = {k: v for k, v in command.headers.items() if k not in signature}
    unsigned = Wire(command.body, command.kind, command.message_id, command.correlation_id,
                    headers=headers)  # fmt: skip
    keys = KEYS if signer != "mallory" else KeySet.generate(["mallory"])
    forged = unsigned if signer is None else keys.keyring(signer).sign(unsigned)
    accepted, verdict_ = await risk.handle(forged)
    assert accepted is None
    assert isinstance(verdict_, DeadLetter)
    assert verdict_.code == code
    assert ran == []
    assert await inbox.stored(EFFECT) is None
