"""The orchestrator runner, written once, run on the stub and the real services, with the
latency mechanisms on and off (see ``conftest.py``). Participants are scripted by the test."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import NoReturn

from contracts import envelope as env
from contracts.base import Reply, StepFailed
from contracts.money import Money
from orchestrator.core.state import SagaStatus, StepStatus
from orchestrator.runtime.chaos import CrashPoints
from participants.payments import contracts as p
from tests.integration.harness import fast_payment
from tests.runner.conftest import Baton, Participant, World, eventually
from tests.support.sagas import catalog as catalog_of

STEPS = ("payment", "risk", "pci", "transaction")
SUCCESS: dict[str, Reply] = {
    "payment": p.PaymentAuthorized(hold_id="hold-1"),
    "risk": p.RiskAssessed(score=12),
    "pci": p.ComplianceApproved(attestation_id="att-1"),
    "transaction": p.TransactionCaptured(capture_id="cap-1"),
}
UNDONE: dict[str, Reply] = {
    "payment": p.AuthorizationVoided(released=True),
    "risk": p.RiskExposureReleased(released=True),
}


def a_payment(key: str = "k-1") -> p.StartTransaction:
    return p.StartTransaction(
        idempotency_key=key,
        account_id="acct-1",
        merchant_id="m-1",
        amount=Money(minor=1250, currency="EUR"),
        card_token="tok_abcdef123456",
    )


async def participants(world: World) -> dict[str, Participant]:
    return {name: await world.participant(name) for name in STEPS}


async def answer(parts: dict[str, Participant], names: tuple[str, ...]) -> None:
    for name in names:
        command = await parts[name].next()
        assert command.envelope.phase == "forward"
        await parts[name].reply(command, SUCCESS[name])


def nothing_left(parts: dict[str, Participant]) -> bool:
    return all(part.inbox.empty() for part in parts.values())


async def test_happy_path_completes(world: World) -> None:
    parts = await participants(world)
    async with world.running() as baton:
        saga_id = await baton.start(a_payment())
        await answer(parts, STEPS)
        state = await baton.finished(saga_id)
    assert state.status is SagaStatus.COMPLETED
    assert all(step.status is StepStatus.SUCCEEDED for step in state.steps.values())
    assert state.wake_at is None
    assert nothing_left(parts), "each command was sent once"


async def test_a_refusal_compensates_in_reverse_order(world: World) -> None:
    parts = await participants(world)
    async with world.running() as baton:
        saga_id = await baton.start(a_payment())
        await answer(parts, ("payment", "risk"))
        refused = await parts["pci"].next()
        await parts["pci"].reply(refused, StepFailed(reason="declined"))
        undone = []
        for _ in range(2):
            # whichever participant gets a compensation first: only one may have one
            got = [name for name in ("payment", "risk") if not parts[name].inbox.empty()]
            name = got[0] if got else await first_with_a_command(parts, ("payment", "risk"))
            compensation = await parts[name].next()
            assert compensation.envelope.phase == "compensate"
            undone.append(name)
            await parts[name].reply(compensation, UNDONE[name])
        state = await baton.finished(saga_id)
    assert undone == ["risk", "payment"]
    assert state.status is SagaStatus.COMPENSATED
    assert state.failed_step == "check_compliance"
    assert nothing_left(parts)


async def first_with_a_command(parts: dict[str, Participant], names: tuple[str, ...]) -> str:
    async def which() -> str | None:
        return next((name for name in names if not parts[name].inbox.empty()), None)

    return await eventually(which, f"a command for one of {names}")


async def test_a_timeout_retries_then_compensates(world: World) -> None:
    parts = await participants(world)
    short = catalog_of(fast_payment(timeout_s=0.3, max_attempts=2))
    async with world.running(short) as baton:
        saga_id = await baton.start(a_payment())
        await answer(parts, ("payment",))
        first = await parts["risk"].next()  # never answered: it times out
        retried = await parts["risk"].next()  # never answered either
        assert retried.envelope.attempt == first.envelope.attempt + 1
        assert retried.envelope.effect_id == first.envelope.effect_id
        # the timed-out step may have taken effect: it is undone too, before the one before it
        for name in ("risk", "payment"):
            compensation = await parts[name].next()
            assert compensation.envelope.phase == "compensate"
            await parts[name].reply(compensation, UNDONE[name])
        state = await baton.finished(saga_id)
        history = [h["what"] for h in await baton.store.history(saga_id)]
    assert state.status is SagaStatus.COMPENSATED
    assert history.count("timed_out") >= 2
    assert nothing_left(parts)


async def test_a_duplicate_reply_is_absorbed(world: World) -> None:
    parts = await participants(world)
    async with world.running() as baton:
        saga_id = await baton.start(a_payment())
        command = await parts["payment"].next()
        await parts["payment"].reply(command, SUCCESS["payment"])
        risk = await parts["risk"].next()  # the reply was applied
        # the switch is live: only with the mechanisms on is the written state kept
        assert (saga_id in baton.orchestrator._recent) is world.latency
        version = (await baton.state(saga_id)).version
        await parts["payment"].reply(command, SUCCESS["payment"])  # the same reply again
        await ignored_once_more(baton, 0)
        assert (await baton.state(saga_id)).version == version, "no second transition"
        await parts["risk"].reply(risk, SUCCESS["risk"])
        await answer(parts, ("pci", "transaction"))
        state = await baton.finished(saga_id)
    assert state.status is SagaStatus.COMPLETED
    assert nothing_left(parts), "the duplicate sent nothing"


async def ignored_once_more(baton: Baton, before: float) -> None:
    async def counted() -> bool:
        return baton.ignored() > before

    await eventually(counted, "the reply was ignored")


async def test_a_stale_attempt_reply_is_ignored(world: World) -> None:
    parts = await participants(world)
    async with world.running() as baton:
        saga_id = await baton.start(a_payment())
        first = await parts["payment"].next()
        await parts["payment"].reply(first, StepFailed(reason="flaky", retriable=True))
        second = await parts["payment"].next()
        assert second.envelope.attempt == first.envelope.attempt + 1
        before = baton.ignored()
        await parts["payment"].reply(first, SUCCESS["payment"], attempt=first.envelope.attempt)
        await ignored_once_more(baton, before)
        assert (await baton.state(saga_id)).steps[
            "authorize_payment"
        ].status is not StepStatus.SUCCEEDED
        assert parts["risk"].inbox.empty(), "a stale success moved nothing on"
        await parts["payment"].reply(second, SUCCESS["payment"])
        await answer(parts, ("risk", "pci", "transaction"))
        state = await baton.finished(saga_id)
    assert state.status is SagaStatus.COMPLETED
    assert nothing_left(parts)


class Crash(Exception):
    """The replica 'dies' at a crash point (raised instead of exiting the process)."""


def crash(code: int) -> NoReturn:
    raise Crash(code)


class FirstTimeOnly(random.Random):
    """Fires a crash point once: 0.0 the first time (below any rate), 1.0 ever after."""

    fired = False

    def random(self) -> float:
        value, self.fired = (1.0 if self.fired else 0.0), True
        return value


async def test_an_outbox_entry_left_unpublished_is_resent_by_the_sweeper(world: World) -> None:
    parts = await participants(world)
    after_commit = CrashPoints(["after_commit"], 1.0, rng=FirstTimeOnly(), exit_process=crash)
    async with world.running(crash=after_commit) as baton:
        saga_id = await baton.start(a_payment())  # committed, then 'crashed' before publishing
        command = await parts["payment"].next()  # only the sweeper can have sent it

        async def swept() -> bool:  # counted just after the publish the participant saw
            return bool(baton.orchestrator.metrics.outbox_swept._value.get() >= 1)

        await eventually(swept, "the sweeper's count")
        await parts["payment"].reply(command, SUCCESS["payment"])
        await answer(parts, ("risk", "pci", "transaction"))
        state = await baton.finished(saga_id)
    assert state.status is SagaStatus.COMPLETED
    assert nothing_left(parts), "the swept command was sent once"


async def test_an_undecodable_reply_is_dead_lettered_with_its_reason(world: World) -> None:
    parts = await participants(world)
    async with world.running() as baton:
        saga_id = await baton.start(a_payment())
        command = await parts["payment"].next()
        garbled = replace(parts["payment"].reply_wire(command, SUCCESS["payment"]), body=b"{not")
        await parts["payment"].send(garbled)
        dead = await eventually(baton.dead.get, "a dead letter")
        t = world.transport.topology
        assert dead.body == b"{not"
        assert dead.headers[env.H_SOURCE_QUEUE] == t.replies_queue
        assert str(dead.headers[env.H_REASON]).startswith("not_json")
        assert (await baton.state(saga_id)).steps[
            "authorize_payment"
        ].status is not StepStatus.SUCCEEDED
        await parts["payment"].reply(command, SUCCESS["payment"])  # the saga is unharmed
        await answer(parts, ("risk", "pci", "transaction"))
        state = await baton.finished(saga_id)
    assert state.status is SagaStatus.COMPLETED
