"""The worker SDK against real RabbitMQ and Redis: replies, inbox, tombstones, dead letters."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from contracts import envelope as env
from contracts.base import Command, Contract, Reply, StepFailed
from contracts.envelope import Envelope
from contracts.money import Money
from contracts.payments import (
    AssessRisk,
    AuthorizationVoided,
    AuthorizePayment,
    PaymentAuthorized,
    RiskAssessed,
    VoidAuthorization,
)
from contracts.topology import Topology
from messaging.amqp import Broker, wire_of
from messaging.codec import Wire, decode, encode
from messaging.errors import TransientError
from messaging.settings import ParticipantSettings
from messaging.tracing import span_id, trace_id
from participants.payments import SERVICES
from participants.payments.ledger import AccountSeed, Ledger, MerchantSeed
from participants.sdk import Handlers, MessageContext, Worker, inbox_key

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0
AMOUNT = Money(minor=1_500, currency="EUR")


@dataclass(frozen=True)
class Received:
    envelope: Envelope
    body: Contract


@pytest.fixture
async def replies(broker: Broker) -> asyncio.Queue[Received]:
    """Every reply the workers publish, decoded, in arrival order."""
    got: asyncio.Queue[Received] = asyncio.Queue()

    async def on_reply(message: AbstractIncomingMessage) -> None:
        envelope, body = decode(wire_of(message))
        await message.ack()
        await got.put(Received(envelope, body))

    await broker.consume(broker.topology.replies_queue, on_reply)
    return got


@pytest.fixture
async def worker_broker(
    broker: Broker, rabbit_url: str, topology: Topology
) -> AsyncIterator[Broker]:
    """The worker's own connection, as in a participant process (the topology is declared)."""
    connected = await Broker.connect(rabbit_url, topology, prefetch=8)
    yield connected
    await connected.close()


@pytest.fixture
async def ledger(redis_client: aioredis.Redis, namespace: str) -> Ledger:
    books = Ledger(redis_client, namespace)
    await books.seed(
        [AccountSeed(account_id="alice", balance_minor=10_000, currency="EUR")],
        [MerchantSeed(merchant_id="shop", currency="EUR")],
    )
    return books


@asynccontextmanager
async def running(
    name: str,
    handlers: Handlers,
    broker: Broker,
    redis: aioredis.Redis,
    namespace: str,
    settings: ParticipantSettings | None = None,
) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None]]]:
    """A worker running as a task; stopped (gracefully) on exit."""
    stop = asyncio.Event()
    worker = Worker(name, handlers, broker, redis, namespace, settings or ParticipantSettings(),
                    rng=random.Random(7))  # fmt: skip
    task = asyncio.create_task(worker.run(stop))
    try:
        yield stop, task
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)


async def send(
    broker: Broker,
    participant: str,
    body: Command,
    *,
    saga_id: str = "saga-1",
    attempt: int = 1,
    phase: env.Phase = "forward",
    step: str = "authorize_payment",
) -> Envelope:
    """Publish a command as the orchestrator would; effect ids follow its saga:step:phase shape."""
    envelope = Envelope(
        kind=body.KIND, saga_id=saga_id, saga="payment", step=step, phase=phase,
        effect_id=f"{saga_id}:{step}:{phase}", attempt=attempt,
        compensates=f"{saga_id}:{step}:forward" if phase == "compensate" else "",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )  # fmt: skip
    t = broker.topology
    await broker.publish(
        encode(envelope, body), exchange=t.commands_exchange, routing_key=participant
    )
    return envelope


async def next_reply(replies: asyncio.Queue[Received]) -> Received:
    return await asyncio.wait_for(replies.get(), DEADLINE_S)


def authorize() -> AuthorizePayment:
    return AuthorizePayment(account_id="alice", amount=AMOUNT)


def payment_handlers(redis: aioredis.Redis, namespace: str) -> Handlers:
    return SERVICES["payment"](redis, namespace)


async def test_happy_path_replies_with_the_hold(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    async with running("payment", payment_handlers(redis_client, namespace), worker_broker,
                       redis_client, namespace):  # fmt: skip
        sent = await send(broker, "payment", authorize())
        got = await next_reply(replies)
    assert isinstance(got.body, PaymentAuthorized)
    assert got.envelope.saga_id == sent.saga_id
    assert got.envelope.step == sent.step
    assert got.envelope.attempt == 1
    assert got.envelope.effect_id == sent.effect_id
    # the reply is a child span of the command: same trace id, a span id of its own
    assert trace_id(got.envelope.traceparent) == trace_id(sent.traceparent)
    assert span_id(got.envelope.traceparent) not in ("", span_id(sent.traceparent))
    assert got.envelope.message_id != sent.message_id
    assert await ledger.balance("alice") == 10_000 - AMOUNT.minor


async def test_duplicate_command_has_its_effect_once_and_the_stored_reply_is_restamped(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    async with running("payment", payment_handlers(redis_client, namespace), worker_broker,
                       redis_client, namespace):  # fmt: skip
        await send(broker, "payment", authorize(), attempt=1)
        first = await next_reply(replies)
        await send(broker, "payment", authorize(), attempt=2)
        second = await next_reply(replies)
    assert first.envelope.attempt == 1
    assert second.envelope.attempt == 2  # the current attempt, so the reply is not stale
    assert first.body == second.body
    assert await ledger.balance("alice") == 10_000 - AMOUNT.minor
    assert len((await ledger.snapshot()).holds) == 1


async def test_compensation_before_command_cancels_the_late_command(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    async with running("payment", payment_handlers(redis_client, namespace), worker_broker,
                       redis_client, namespace):  # fmt: skip
        await send(broker, "payment", VoidAuthorization(), phase="compensate")
        voided = await next_reply(replies)
        await send(broker, "payment", authorize(), attempt=1)
        late = await next_reply(replies)
    assert voided.body == AuthorizationVoided(released=False)
    assert voided.envelope.phase == "compensate"
    assert isinstance(late.body, StepFailed)
    assert late.body.reason == "cancelled"
    assert late.body.retriable is False
    assert (await ledger.snapshot()).holds == {}
    assert await ledger.balance("alice") == 10_000


def good_headers(**overrides: Any) -> dict[str, Any]:
    headers: dict[str, Any] = {
        env.H_SAGA_ID: "saga-bad", env.H_STEP: "authorize_payment", env.H_PHASE: "forward",
        env.H_EFFECT_ID: "saga-bad:authorize_payment:forward", env.H_ATTEMPT: 1,
        env.H_SCHEMA: 1,
    }  # fmt: skip
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


def body_with(minor: int, currency: str) -> bytes:
    return json.dumps(
        {"account_id": "alice", "amount": {"minor": minor, "currency": currency}}
    ).encode()


GOOD_BODY = body_with(100, "EUR")
RISK_BODY = AssessRisk(account_id="alice", merchant_id="shop", amount=AMOUNT).model_dump_json()
MALFORMED: dict[str, tuple[str, Callable[[], Wire]]] = {
    "not_json": ("not_json", lambda: Wire(b"{nope", AuthorizePayment.KIND, headers=good_headers())),
    "wrong_schema": ("invalid_body", lambda: Wire(b'{"x": 1}', AuthorizePayment.KIND,
                                                  headers=good_headers())),
    "unknown_type": ("unknown_type", lambda: Wire(GOOD_BODY, "payments.nope.v1",
                                                  headers=good_headers())),
    "missing_headers": ("missing_header", lambda: Wire(GOOD_BODY, AuthorizePayment.KIND)),
    "wrong_content_type": ("wrong_content_type", lambda: Wire(
        GOOD_BODY, AuthorizePayment.KIND, content_type="text/plain", headers=good_headers())),
    "negative_amount": ("invalid_body", lambda: Wire(body_with(-5, "EUR"), AuthorizePayment.KIND,
                                                     headers=good_headers())),
    "unknown_currency": ("invalid_body", lambda: Wire(body_with(5, "XXX"), AuthorizePayment.KIND,
                                                      headers=good_headers())),
    "missing_effect_id": ("missing_effect_id", lambda: Wire(
        GOOD_BODY, AuthorizePayment.KIND, headers=good_headers(**{env.H_EFFECT_ID: None}))),
    "not_our_command": ("no_handler", lambda: Wire(
        RISK_BODY.encode(), AssessRisk.KIND, headers=good_headers())),
}  # fmt: skip


async def test_malformed_messages_are_dead_lettered_and_the_worker_keeps_going(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    t = broker.topology
    dead: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def on_dead(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await dead.put(message)

    await broker.consume(t.dead_letter_queue(t.command_queue("payment")), on_dead)
    async with running("payment", payment_handlers(redis_client, namespace), worker_broker,
                       redis_client, namespace):  # fmt: skip
        for case, (_, make) in MALFORMED.items():
            wire = make()
            await broker.publish(
                Wire(wire.body, wire.kind, message_id=case, content_type=wire.content_type,
                     headers=wire.headers),
                exchange=t.commands_exchange, routing_key="payment",
            )  # fmt: skip
        reasons: dict[str, str] = {}
        while len(reasons) < len(MALFORMED):
            message = await asyncio.wait_for(dead.get(), DEADLINE_S)
            headers = message.headers or {}
            reasons[str(message.message_id)] = str(headers[env.H_REASON])
            assert headers[env.H_SOURCE_QUEUE] == t.command_queue("payment")
        await send(broker, "payment", authorize())  # still alive
        assert isinstance((await next_reply(replies)).body, PaymentAuthorized)
    for case, (code, _) in MALFORMED.items():
        assert reasons[case].startswith(code), (case, reasons[case])
    assert replies.empty()  # no reply to any malformed message


async def test_transient_error_replies_retriable_and_stores_nothing(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received],
) -> None:  # fmt: skip
    handlers = Handlers()
    calls: list[int] = []

    @handlers.handler(AssessRisk)
    async def flaky(cmd: AssessRisk, ctx: MessageContext) -> RiskAssessed:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise TransientError("risk database unreachable")
        return RiskAssessed(score=10)

    cmd = AssessRisk(account_id="alice", merchant_id="shop", amount=AMOUNT)
    async with running("risk", handlers, worker_broker, redis_client, namespace):
        sent = await send(broker, "risk", cmd, step="assess_risk", attempt=1)
        failed = await next_reply(replies)
        assert isinstance(failed.body, StepFailed)
        assert failed.body.retriable is True
        assert failed.body.reason == "transient_error"
        assert not await redis_client.exists(inbox_key(namespace, "risk", sent.effect_id))
        await send(broker, "risk", cmd, step="assess_risk", attempt=2)
        retried = await next_reply(replies)
    assert retried.body == RiskAssessed(score=10)
    assert retried.envelope.attempt == 2
    assert calls == [1, 2]  # the retry ran the handler again
    assert await redis_client.exists(inbox_key(namespace, "risk", sent.effect_id))


async def test_injected_failure_refuses_forward_commands_only(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    always_fail = ParticipantSettings(fail_rate=1.0)
    async with running("payment", payment_handlers(redis_client, namespace), worker_broker,
                       redis_client, namespace, always_fail):  # fmt: skip
        await send(broker, "payment", authorize())
        refused = await next_reply(replies)
        await send(broker, "payment", VoidAuthorization(), phase="compensate")
        voided = await next_reply(replies)
    assert refused.body == StepFailed(reason="injected_failure", retriable=False)
    assert isinstance(voided.body, AuthorizationVoided)
    assert await ledger.balance("alice") == 10_000


async def test_graceful_shutdown_finishes_the_message_in_flight(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received],
) -> None:  # fmt: skip
    handlers = Handlers()
    entered, release = asyncio.Event(), asyncio.Event()

    @handlers.handler(AssessRisk)
    async def slow(cmd: AssessRisk, ctx: MessageContext) -> Reply:
        entered.set()
        await release.wait()
        return RiskAssessed(score=42)

    cmd = AssessRisk(account_id="alice", merchant_id="shop", amount=AMOUNT)
    queue = broker.topology.command_queue("risk")
    async with running("risk", handlers, worker_broker, redis_client, namespace) as (stop, task):
        await send(broker, "risk", cmd, saga_id="in-flight", step="assess_risk")
        await asyncio.wait_for(entered.wait(), DEADLINE_S)
        stop.set()
        await send(broker, "risk", cmd, saga_id="after-stop", step="assess_risk")
        await asyncio.sleep(0)  # let the worker observe stop
        assert not task.done()  # still finishing the message in flight
        release.set()
        await asyncio.wait_for(task, DEADLINE_S)
        finished = await next_reply(replies)
    assert finished.body == RiskAssessed(score=42)
    assert finished.envelope.saga_id == "in-flight"
    for _ in range(200):  # the command sent after stop is back in the queue, untouched
        if await broker.queue_depth(queue) == 1:
            break
        await asyncio.sleep(0.05)
    assert await broker.queue_depth(queue) == 1
    assert replies.empty()


async def test_run_participant_serves_its_queue_until_stopped(
    broker: Broker, rabbit_url: str, redis_url: str, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    from messaging.settings import RabbitSettings, RedisSettings, Settings
    from participants.payments import run_participant

    settings = Settings(
        namespace=namespace,
        rabbit=RabbitSettings.model_validate({"url": rabbit_url, "prefetch": 4}),
        redis=RedisSettings.model_validate({"url": redis_url}),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_participant("payment", settings, stop))
    try:
        await send(broker, "payment", authorize())
        got = await next_reply(replies)
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)
    assert isinstance(got.body, PaymentAuthorized)
    assert await ledger.balance("alice") == 10_000 - AMOUNT.minor
    with pytest.raises(ValueError, match="unknown participant"):
        await run_participant("nobody", settings, stop)
