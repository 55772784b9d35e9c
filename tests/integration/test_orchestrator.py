"""The orchestrator against real RabbitMQ and Redis, with participants scripted by the test.

Scripted participants let each test choose exactly which reply comes, when, and how often:
retries, timeouts, duplicates, stale attempts and lost replies are all provoked on purpose.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from contracts.base import Reply, StepFailed
from contracts.envelope import Envelope
from contracts.money import Money
from messaging.errors import DefinitionError
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire
from messaging.trust.signing import KeySet
from orchestrator.core.engine import effect_id
from orchestrator.core.state import SagaStatus, StepStatus
from participants.payments import contracts as p
from tests.integration.harness import Baton, ScriptedParticipant, eventually, running_baton

pytestmark = pytest.mark.integration

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
    "pci": p.AttestationRevoked(revoked=True),
}


def a_payment(key: str = "k-1") -> p.StartTransaction:
    return p.StartTransaction(
        idempotency_key=key,
        account_id="acct-1",
        merchant_id="m-1",
        amount=Money(minor=1250, currency="EUR"),
        card_token="tok_abcdef123456",
    )


@pytest.fixture
async def baton(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> AsyncIterator[Baton]:
    async with running_baton(broker, redis_client, settings, keys=keys) as running:
        yield running


@pytest.fixture
async def world(broker: Broker, keys: KeySet) -> dict[str, ScriptedParticipant]:
    return {name: await ScriptedParticipant(broker, name, keys).start() for name in STEPS}


async def answer_all(world: dict[str, ScriptedParticipant], upto: int = 4) -> None:
    for name in STEPS[:upto]:
        command = await world[name].next()
        await world[name].reply(command, SUCCESS[name])


async def test_happy_path_completes_with_output(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    saga_id = await baton.start(a_payment())
    await answer_all(world)
    final = await baton.final(saga_id)
    assert final["event"] == "completed"
    assert final["output"] == {"hold_id": "hold-1", "capture_id": "cap-1"}
    state = await baton.state(saga_id)
    assert all(step.status is StepStatus.SUCCEEDED for step in state.steps.values())
    assert state.wake_at is None


@pytest.mark.parametrize("failing", range(4))
async def test_business_failure_compensates_completed_steps_in_reverse(
    baton: Baton, world: dict[str, ScriptedParticipant], failing: int
) -> None:
    saga_id = await baton.start(a_payment())
    await answer_all(world, upto=failing)
    command = await world[STEPS[failing]].next()
    await world[STEPS[failing]].reply(command, StepFailed(reason="declined"))
    undone = []
    for name in reversed(STEPS[:failing]):
        compensation = await world[name].next()
        assert compensation.envelope.phase == "compensate"
        assert compensation.envelope.compensates == effect_id(
            saga_id, compensation.envelope.step, "forward"
        )
        undone.append(name)
        await world[name].reply(compensation, UNDONE[name])
    final = await baton.final(saga_id)
    assert final["event"] == "compensated"
    assert final["failed_step"] == (await baton.state(saga_id)).failed_step
    assert undone == list(reversed(STEPS[:failing]))
    assert all(q.inbox.empty() for q in world.values())


async def test_retriable_failure_is_retried_with_the_same_effect_id(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    saga_id = await baton.start(a_payment())
    first = await world["payment"].next()
    await world["payment"].reply(first, StepFailed(reason="db_down", retriable=True))
    second = await world["payment"].next()
    assert second.envelope.attempt == first.envelope.attempt + 1
    assert second.envelope.effect_id == first.envelope.effect_id
    await world["payment"].reply(second, SUCCESS["payment"])
    await answer_all_after(world, "payment")
    assert (await baton.final(saga_id))["event"] == "completed"


async def answer_all_after(world: dict[str, ScriptedParticipant], done: str) -> None:
    for name in STEPS[STEPS.index(done) + 1 :]:
        command = await world[name].next()
        await world[name].reply(command, SUCCESS[name])


async def test_step_timeout_resends_then_completes(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    saga_id = await baton.start(a_payment())
    ignored = await world["payment"].next()  # no answer: the step times out
    retried = await world["payment"].next(timeout_s=10)
    assert retried.envelope.attempt == ignored.envelope.attempt + 1
    await world["payment"].reply(retried, SUCCESS["payment"])
    await answer_all_after(world, "payment")
    assert (await baton.final(saga_id))["event"] == "completed"
    history = [h["what"] for h in await baton.store.history(saga_id)]
    assert "timed_out" in history


async def test_duplicate_and_stale_replies_change_nothing(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    saga_id = await baton.start(a_payment())
    first = await world["payment"].next()
    await world["payment"].reply(first, StepFailed(reason="flaky", retriable=True))
    second = await world["payment"].next()
    # A late success for attempt 1 is stale: it must not advance the saga.
    await world["payment"].reply(first, SUCCESS["payment"], attempt=first.envelope.attempt)
    await world["payment"].reply(second, SUCCESS["payment"])
    await world["payment"].reply(second, SUCCESS["payment"])  # duplicate of the current attempt
    await answer_all_after(world, "payment")
    assert (await baton.final(saga_id))["event"] == "completed"
    ignored = baton.orchestrator.metrics.ignored
    assert (
        ignored.labels("stale_attempt")._value.get() + ignored.labels("not_awaited")._value.get()
        >= 2
    )
    assert world["risk"].inbox.empty(), "exactly one risk command was sent"


async def test_lost_capture_reply_is_retried_never_compensated(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    saga_id = await baton.start(a_payment())
    await answer_all(world, upto=3)
    lost = await world["transaction"].next()  # the capture happened, but its reply is lost
    again = await world["transaction"].next(timeout_s=10)
    assert again.envelope.effect_id == lost.envelope.effect_id, "the participant can deduplicate"
    await world["transaction"].reply(again, SUCCESS["transaction"])
    assert (await baton.final(saga_id))["event"] == "completed"
    assert all(q.inbox.empty() for q in world.values()), "no compensation was sent"


async def test_duplicate_start_starts_one_saga(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    first = await baton.start(a_payment("same-key"))
    second = await baton.start(a_payment("same-key"))
    assert first == second
    await answer_all(world)
    assert (await baton.final(first))["event"] == "completed"
    assert (await baton.store.counts())[SagaStatus.COMPLETED] == 1
    assert all(q.inbox.empty() for q in world.values()), "each command was sent once"


async def answer(baton: Baton, event: str) -> dict[str, Any]:
    async def arrived() -> dict[str, Any] | None:
        return next((a for a in baton.answers if a["event"] == event), None)

    return await eventually(arrived, what=f"a {event} answer")


async def test_a_duplicate_start_is_answered_with_the_sagas_state(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    """It hung until the caller's timeout (finding 7)."""
    first = await baton.start(a_payment("again"))
    await answer_all(world)
    assert (await baton.final(first))["event"] == "completed"
    await baton.start(a_payment("again"))
    duplicate = await answer(baton, "duplicate")
    assert duplicate["saga_id"] == first
    assert duplicate["status"] == "completed"
    assert duplicate["idempotency_key"] == "again"
    assert duplicate["output"] == {"hold_id": "hold-1", "capture_id": "cap-1"}


async def test_a_reused_key_and_an_invalid_start_are_answered_rejected(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    first = await baton.start(a_payment("reused-2"))
    other = a_payment("reused-2").model_copy(update={"amount": Money(minor=99, currency="EUR")})
    await baton.start(other)
    rejected = await answer(baton, "rejected")
    assert (rejected["saga_id"], rejected["reason"]) == (first, "idempotency_key_reused")
    assert rejected["idempotency_key"] == "reused-2"
    baton.answers.clear()
    bad = Wire(b'{"idempotency_key": "k-bad"}', kind=p.StartTransaction.KIND,
               reply_to=baton.reply_queue)  # fmt: skip
    t = baton.broker.topology
    await baton.broker.publish(baton.upstream.sign(bad), exchange="", routing_key=t.start_queue)
    rejected = await answer(baton, "rejected")
    assert (rejected["reason"], rejected["idempotency_key"]) == ("invalid_body", "k-bad")
    assert await eventually(dead_lettered(baton, t.start_queue, 2), what="both dead-lettered")


async def test_a_saga_whose_definition_is_not_loaded_backs_off_and_blocks_no_other(
    baton: Baton, world: dict[str, ScriptedParticipant], redis_client: aioredis.Redis
) -> None:
    """Such a saga was polled 5,200 times a second, and a healthy one never ticked (finding 4)."""
    orphan = await baton.start(a_payment("orphan"))
    await world["payment"].next()  # let it time out: due for ticks from now on
    state = await baton.state(orphan)
    unknown = state.model_copy(update={"definition_version": 99})
    await baton.store.commit(state.version, unknown, (), ())
    healthy = await baton.start(a_payment("healthy"))
    command = await world["payment"].next()
    await world["payment"].next()  # the healthy saga's timeout was ticked and it resent
    assert command.envelope.saga_id == healthy
    shard = baton.store.keys.shard(orphan)

    async def postponed() -> float | None:
        score = await redis_client.zscore(baton.store.keys.deadlines(shard), orphan)
        now = time.time()
        return score if score is not None and score > now + 0.2 else None

    assert await eventually(postponed, what="the orphan's wake-up moved later")
    with pytest.raises(DefinitionError, match="payment v99"):
        await baton.orchestrator.check_definitions()


async def test_a_timeout_while_the_broker_refused_the_command_costs_no_attempt(
    baton: Baton, world: dict[str, ScriptedParticipant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempts that were never published spent the budget in a broker outage (finding 3)."""
    broker = baton.broker
    real_publish = broker.publish
    outage = True

    async def refusing(wire: Wire, *, exchange: str, routing_key: str) -> None:
        if outage and exchange == broker.topology.commands_exchange:
            raise ConnectionError("broker away")
        await real_publish(wire, exchange=exchange, routing_key=routing_key)

    monkeypatch.setattr(broker, "publish", refusing)
    saga_id = await baton.start(a_payment("outage"))

    async def waited_again() -> bool:
        history = await baton.store.history(saga_id)
        return any(entry["what"] == "unpublished" for entry in history)

    assert await eventually(waited_again, what="an unpublished timeout")
    state = await baton.state(saga_id)
    assert [w.attempt for w in state.waiting] == [1]
    outage = False
    command = await world["payment"].next()  # the sweeper publishes it once the broker is back
    assert command.envelope.attempt == 1
    await world["payment"].reply(command, SUCCESS["payment"])
    assert (await world["risk"].next()).envelope.saga_id == saga_id  # and it moved on


async def test_same_key_different_payment_is_dead_lettered(
    baton: Baton, world: dict[str, ScriptedParticipant]
) -> None:
    await baton.start(a_payment("reused"))
    other = a_payment("reused").model_copy(update={"amount": Money(minor=99, currency="EUR")})
    await baton.start(other)
    start_queue = baton.broker.topology.start_queue
    assert await eventually(dead_lettered(baton, start_queue, 1), what="dead letter")


def dead_lettered(baton: Baton, queue: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await baton.dead_letters(queue) == count

    return check


MALFORMED: list[tuple[str, Wire]] = [
    ("not_json", Wire(b"{nope", kind=p.StartTransaction.KIND)),
    ("wrong_schema", Wire(b'{"idempotency_key": "x"}', kind=p.StartTransaction.KIND)),
    ("unknown_type", Wire(b"{}", kind="payments.unheard_of.v1")),
    ("missing_type", Wire(b"{}", kind=None)),
    ("wrong_content_type", Wire(b"{}", kind=p.StartTransaction.KIND, content_type="text/plain")),
    ("huge_body", Wire(b" " * (300 * 1024), kind=p.StartTransaction.KIND)),
    (
        "negative_amount",
        Wire(
            a_payment().model_dump_json().replace('"minor":1250', '"minor":-5').encode(),
            kind=p.StartTransaction.KIND,
        ),
    ),
    (
        "unknown_currency",
        Wire(
            a_payment().model_dump_json().replace('"EUR"', '"XXX"').encode(),
            kind=p.StartTransaction.KIND,
        ),
    ),
    (
        "float_money",
        Wire(
            a_payment().model_dump_json().replace('"minor":1250', '"minor":12.5').encode(),
            kind=p.StartTransaction.KIND,
        ),
    ),
]


async def test_malformed_messages_are_dead_lettered_and_change_nothing(
    baton: Baton, keys: KeySet
) -> None:
    """Signed by whom they should be, so that what is judged is the message itself."""
    t = baton.broker.topology
    for _, wire in MALFORMED:
        signed = baton.upstream.sign(wire)
        await baton.broker.publish(signed, exchange="", routing_key=t.start_queue)
    reply_garbage = [
        Wire(b"[]", kind=p.PaymentAuthorized.KIND),  # no saga id header
        Wire(
            b'{"hold_id": "h"}',
            kind=p.PaymentAuthorized.KIND,
            headers=Envelope(kind=p.PaymentAuthorized.KIND, saga_id="no-such-saga").headers(),
        ),
        Wire(b"\xff\xfe", kind=StepFailed.KIND, headers={"x-baton-saga-id": "s"}),
    ]
    for wire in reply_garbage:
        signed = keys.keyring("payment").sign(wire)
        await baton.broker.publish(signed, exchange=t.replies_exchange, routing_key=t.replies_queue)
    assert await eventually(dead_lettered(baton, t.start_queue, len(MALFORMED)), what="start DLQ")
    assert await eventually(
        dead_lettered(baton, t.replies_queue, len(reply_garbage)), what="reply DLQ"
    )
    assert sum((await baton.store.counts()).values()) == 0, "no saga was created"
    assert await baton.broker.queue_depth(t.start_queue) == 0
