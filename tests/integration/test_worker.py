"""The worker SDK against real RabbitMQ and Redis: replies, inbox, tombstones, dead letters."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import CollectorRegistry

from baton_sdk import (
    Claim,
    Handlers,
    Inbox,
    InboxKeys,
    MessageContext,
    PrometheusWorkerMetrics,
    RedisInbox,
    Worker,
)
from contracts import envelope as env
from contracts.base import Command, Contract, Reply, StepFailed
from contracts.envelope import Envelope
from contracts.money import Money
from contracts.topology import Topology
from messaging.errors import TransientError
from messaging.observability.tracing import span_id, trace_id
from messaging.settings import ParticipantSettings
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import Wire, decode, encode
from messaging.trust.signing import Keyring, KeySet, SigningKey
from participants.payments import SERVICES
from participants.payments.authorization import AuthorizationService
from participants.payments.contracts import (
    AssessRisk,
    AuthorizationVoided,
    AuthorizePayment,
    CaptureTransaction,
    PaymentAuthorized,
    RiskAssessed,
    TransactionCaptured,
    VoidAuthorization,
    payment_contracts,
)
from participants.payments.ledger import AccountSeed, Ledger, MerchantSeed
from participants.payments.pci import PciKeys

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0
AMOUNT = Money(minor=1_500, currency="EUR")
# Signed as deployed: commands by the orchestrator, replies by the participant.
KEYS = KeySet.generate(["orchestrator", "payment", "risk", "pci", "transaction", "cli"])
ORCHESTRATOR = KEYS.keyring("orchestrator")


@dataclass(frozen=True)
class Received:
    envelope: Envelope
    body: Contract


@pytest.fixture
async def replies(broker: Broker) -> asyncio.Queue[Received]:
    """Every reply the workers publish, decoded, in arrival order."""
    got: asyncio.Queue[Received] = asyncio.Queue()

    async def on_reply(message: AbstractIncomingMessage) -> None:
        wire = wire_of(message)
        assert ORCHESTRATOR.verify(wire) == wire.headers[env.H_SIGNER]  # signed by its sender
        envelope, body = decode(wire, payment_contracts())
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
    **options: Any,
) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None]]]:
    """A worker running as a task; stopped (gracefully) on exit. ``options`` go to Worker."""
    stop = asyncio.Event()
    worker = Worker(name, handlers, broker, redis, namespace, settings or ParticipantSettings(),
                    keyring=KEYS.keyring(name), rng=random.Random(7), **options)  # fmt: skip
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
    deadline: float | None = None,
) -> Envelope:
    """Publish a command as the orchestrator would; effect ids follow its saga:step:phase shape."""
    envelope = Envelope(
        kind=body.KIND, saga_id=saga_id, saga="payment", step=step, phase=phase,
        effect_id=f"{saga_id}:{step}:{phase}", attempt=attempt,
        compensates=f"{saga_id}:{step}:forward" if phase == "compensate" else "",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        deadline=deadline,
    )  # fmt: skip
    t = broker.topology
    await broker.publish(
        ORCHESTRATOR.sign(encode(envelope, body)), exchange=t.commands_exchange,
        routing_key=participant,
    )  # fmt: skip
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


STRANGER = KeySet([SigningKey.generate("orchestrator", "stolen")])  # not a key anyone trusts


def forged_authorize() -> Wire:
    """A well-formed authorize: only its signature is wrong."""
    return Wire(body_with(100, "EUR"), AuthorizePayment.KIND, headers=good_headers())


# Not signed by the orchestrator: dead-lettered before anything in them is read.
FORGED: dict[str, tuple[str, Keyring | None]] = {
    "unsigned": ("unsigned", None),
    "signed_by_an_upstream": ("wrong_sender", KEYS.keyring("cli")),
    "signed_by_another_participant": ("wrong_sender", KEYS.keyring("risk")),
    "signed_by_an_unknown_key": ("unknown_key", STRANGER.keyring("orchestrator")),
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
        cases: dict[str, tuple[Callable[[], Wire], Keyring | None]] = {
            case: (make, ORCHESTRATOR) for case, (_, make) in MALFORMED.items()
        }
        cases |= {case: (forged_authorize, signer) for case, (_, signer) in FORGED.items()}
        for case, (make, signer) in cases.items():
            wire = make()
            wire = Wire(wire.body, wire.kind, message_id=case, content_type=wire.content_type,
                        headers=wire.headers)  # fmt: skip
            await broker.publish(
                signer.sign(wire) if signer else wire,
                exchange=t.commands_exchange, routing_key="payment",
            )  # fmt: skip
        reasons: dict[str, str] = {}
        while len(reasons) < len(cases):
            message = await asyncio.wait_for(dead.get(), DEADLINE_S)
            headers = message.headers or {}
            reasons[str(message.message_id)] = str(headers[env.H_REASON])
            assert headers[env.H_SOURCE_QUEUE] == t.command_queue("payment")
        await send(broker, "payment", authorize())  # still alive
        assert isinstance((await next_reply(replies)).body, PaymentAuthorized)
    for case, (code, _) in (MALFORMED | FORGED).items():
        assert reasons[case].startswith(code), (case, reasons[case])
    assert replies.empty()  # no reply to any malformed message
    assert await ledger.balance("alice") == 10_000 - AMOUNT.minor  # no forged one authorized


@pytest.mark.parametrize(
    "error",
    [TransientError("risk database unreachable"), redis.exceptions.ConnectionError("reset")],
    ids=["transient", "redis"],
)
async def test_an_infrastructure_error_is_nacked_and_redelivered_never_answered(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], error: Exception,
) -> None:  # fmt: skip
    handlers = Handlers()
    calls: list[tuple[int, float]] = []

    @handlers.handler(AssessRisk)
    async def flaky(cmd: AssessRisk, ctx: MessageContext) -> RiskAssessed:
        calls.append((ctx.attempt, time.monotonic()))
        if len(calls) == 1:
            raise error
        return RiskAssessed(score=10)

    cmd = AssessRisk(account_id="alice", merchant_id="shop", amount=AMOUNT)
    pause = ParticipantSettings(redeliver_min_s=0.3, redeliver_max_s=0.4)
    async with running("risk", handlers, worker_broker, redis_client, namespace, pause):
        sent = await send(broker, "risk", cmd, step="assess_risk", attempt=1)
        answered = await next_reply(replies)
    assert answered.body == RiskAssessed(score=10)
    assert answered.envelope.attempt == 1  # the same delivery, redelivered: no new attempt
    assert [attempt for attempt, _ in calls] == [1, 1]
    assert calls[1][1] - calls[0][1] >= 0.3  # held for the pause before the nack
    assert replies.empty()  # the failure itself was never answered
    stored = InboxKeys(namespace, "risk").outcome(sent.effect_id)
    assert await redis_client.exists(stored)


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
    task = asyncio.create_task(
        run_participant("payment", settings, stop, keyring=KEYS.keyring("payment"))
    )
    try:
        await send(broker, "payment", authorize())
        got = await next_reply(replies)
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)
    assert isinstance(got.body, PaymentAuthorized)
    assert await ledger.balance("alice") == 10_000 - AMOUNT.minor
    with pytest.raises(ValueError, match="unknown participant"):
        await run_participant("nobody", settings, stop, keyring=KEYS.keyring("payment"))


# -- one outcome per effect id (protocol §3-5) -------------------------------------------------


class WatchedInbox(RedisInbox):
    """The real inbox, telling the test when a delivery found its subject busy."""

    def __init__(self, redis: aioredis.Redis, namespace: str, participant: str) -> None:
        super().__init__(redis, namespace, participant, ttl_s=3600, contracts=payment_contracts())
        self.busy = asyncio.Event()

    async def claim(self, effect_id: str, *, compensates: str = "", lease_s: float) -> Claim:
        claim = await super().claim(effect_id, compensates=compensates, lease_s=lease_s)
        if claim.busy:
            self.busy.set()
        return claim


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds, or fail after DEADLINE_S."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)  # polling a condition with a deadline, not settling
    raise AssertionError(what)  # unreachable: the timeout raises first


async def replies_of(replies: asyncio.Queue[Received], n: int) -> list[Received]:
    return [await next_reply(replies) for _ in range(n)]


async def test_concurrent_duplicates_of_one_effect_never_run_in_parallel(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received],
) -> None:  # fmt: skip
    handlers, inbox = Handlers(), WatchedInbox(redis_client, namespace, "risk")
    running_now, overlap, entered, go = 0, asyncio.Event(), asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    @handlers.handler(AssessRisk)
    async def assess(cmd: AssessRisk, ctx: MessageContext) -> RiskAssessed:
        nonlocal running_now
        running_now += 1
        calls.append(ctx.attempt)
        if running_now > 1:
            overlap.set()
        entered.set()
        await go.wait()
        running_now -= 1
        return RiskAssessed(score=ctx.attempt)

    cmd = AssessRisk(account_id="alice", merchant_id="shop", amount=AMOUNT)
    async with running("risk", handlers, worker_broker, redis_client, namespace, inbox=inbox):
        await asyncio.gather(*(send(broker, "risk", cmd, step="assess_risk", attempt=n)
                               for n in (1, 2, 3)))  # fmt: skip
        await asyncio.wait_for(entered.wait(), DEADLINE_S)
        seen = asyncio.ensure_future(overlap.wait()), asyncio.ensure_future(inbox.busy.wait())
        await asyncio.wait(seen, timeout=DEADLINE_S, return_when=asyncio.FIRST_COMPLETED)
        for waiting in seen:
            waiting.cancel()
        go.set()
        got = await replies_of(replies, 3)
    assert not overlap.is_set()
    assert len(calls) == 1  # the other deliveries answered the stored outcome
    assert {r.body for r in got} == {RiskAssessed(score=calls[0])}
    assert sorted(r.envelope.attempt for r in got) == [1, 2, 3]  # each stamped with its own


async def test_a_slow_attempt_racing_a_refusal_leaves_one_outcome(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    """Attempt 1 stalls before the ledger; attempt 2 comes while the balance is short."""
    await ledger.seed([AccountSeed(account_id="carol", balance_minor=1_000, currency="EUR")])
    service, inbox = AuthorizationService(ledger), WatchedInbox(redis_client, namespace, "payment")
    entered, go = asyncio.Event(), asyncio.Event()
    handlers = Handlers()

    @handlers.handler(AuthorizePayment)
    async def stall_first(cmd: AuthorizePayment, ctx: MessageContext) -> PaymentAuthorized:
        if ctx.attempt == 1:
            entered.set()
            await go.wait()
        return await service.authorize(cmd, ctx)

    handlers.register(VoidAuthorization, service.void)
    cmd = AuthorizePayment(account_id="carol", amount=Money(minor=1_000, currency="EUR"))
    async with running("payment", handlers, worker_broker, redis_client, namespace, inbox=inbox):
        await send(broker, "payment", cmd, attempt=1)
        await asyncio.wait_for(entered.wait(), DEADLINE_S)
        await ledger.authorize("other:auth", "other", "carol", Money(minor=500, currency="EUR"))
        await send(broker, "payment", cmd, attempt=2)  # now it would be insufficient_funds
        await asyncio.wait_for(inbox.busy.wait(), DEADLINE_S)
        assert await ledger.void("other:auth")  # the money is back before attempt 1 goes on
        go.set()
        got = await replies_of(replies, 2)
    books = await ledger.snapshot()
    held = [h for h in books.holds.values() if h.saga_id == "saga-1" and h.status == "held"]
    assert {type(r.body) for r in got} == {PaymentAuthorized}
    assert len(held) == 1
    assert got[0].body == got[1].body == PaymentAuthorized(hold_id=held[0].hold_id)
    assert await ledger.balance("carol") == 0


async def test_concurrent_identical_captures_move_money_iff_the_reply_says_captured(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    """Half the captures are refused by injected chaos, racing an identical copy."""
    pairs, price = 40, Money(minor=100, currency="EUR")
    holds = {f"s{i}": await ledger.authorize(f"s{i}:auth", f"s{i}", "alice", price)
             for i in range(pairs)}  # fmt: skip
    for saga in holds:  # what PCI would have issued: the capture checks it
        await redis_client.hset(
            PciKeys(namespace).attestation(f"att_{saga}"),
            mapping={"status": "issued", "saga_id": saga, "merchant": "shop"},
        )
    coin_flip = ParticipantSettings(fail_rate=0.5)
    async with running("transaction", SERVICES["transaction"](redis_client, namespace),
                       worker_broker, redis_client, namespace, coin_flip):  # fmt: skip
        await asyncio.gather(*(
            send(broker, "transaction", CaptureTransaction(
                hold_id=hold, merchant_id="shop", amount=price, attestation_id=f"att_{saga}"),
                saga_id=saga, step="capture_transaction", attempt=attempt)
            for saga, hold in holds.items() for attempt in (1, 2)
        ))  # fmt: skip
        got = await replies_of(replies, 2 * pairs)
    by_saga: dict[str, list[Contract]] = {}
    for reply in got:
        by_saga.setdefault(reply.envelope.saga_id, []).append(reply.body)
    books = await ledger.snapshot()
    captured = {s for s, bodies in by_saga.items() if isinstance(bodies[0], TransactionCaptured)}
    for saga, bodies in by_saga.items():
        assert bodies[0] == bodies[1], saga  # one outcome per effect id
        assert books.captures_per_saga.get(saga, 0) == (saga in captured), saga
    assert 0 < len(captured) < pairs  # both outcomes happened
    assert books.merchants["shop"].balance == price.minor * len(captured)
    report = await ledger.check_books(dict.fromkeys(holds, "running"))
    assert report.balanced
    assert not report.double_captures


async def test_a_compensation_during_its_forward_handler_waits_then_voids_the_hold(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received], ledger: Ledger,
) -> None:  # fmt: skip
    service, inbox = AuthorizationService(ledger), WatchedInbox(redis_client, namespace, "payment")
    entered, go = asyncio.Event(), asyncio.Event()
    handlers = Handlers()

    @handlers.handler(AuthorizePayment)
    async def stall(cmd: AuthorizePayment, ctx: MessageContext) -> PaymentAuthorized:
        entered.set()
        await go.wait()  # the orchestrator timed out meanwhile and compensates
        return await service.authorize(cmd, ctx)

    handlers.register(VoidAuthorization, service.void)
    async with running("payment", handlers, worker_broker, redis_client, namespace, inbox=inbox):
        await send(broker, "payment", authorize())
        await asyncio.wait_for(entered.wait(), DEADLINE_S)
        await send(broker, "payment", VoidAuthorization(), phase="compensate")
        await asyncio.wait_for(inbox.busy.wait(), DEADLINE_S)  # it waits for the forward one
        go.set()
        got = {r.envelope.phase: r.body for r in await replies_of(replies, 2)}
    assert isinstance(got["forward"], PaymentAuthorized)
    assert got["compensate"] == AuthorizationVoided(released=True)
    assert await ledger.balance("alice") == 10_000
    hold = (await ledger.snapshot()).holds[got["forward"].hold_id]
    assert hold.status == "voided"


async def test_an_expired_command_is_acked_and_dropped_without_a_reply(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received],
) -> None:  # fmt: skip
    handlers, calls = Handlers(), []

    @handlers.handler(AssessRisk)
    async def assess(cmd: AssessRisk, ctx: MessageContext) -> RiskAssessed:
        calls.append(ctx.saga_id)
        return RiskAssessed(score=1)

    metrics = PrometheusWorkerMetrics(CollectorRegistry())
    labels = {"participant": "risk", "kind": AssessRisk.KIND, "outcome": "expired"}

    async def dropped() -> bool:
        return metrics.registry.get_sample_value("baton_participant_messages_total", labels) == 1

    cmd = AssessRisk(account_id="alice", merchant_id="shop", amount=AMOUNT)
    queue = broker.topology.command_queue("risk")
    async with running("risk", handlers, worker_broker, redis_client, namespace,
                       metrics=metrics, clock=lambda: 2_000.0):  # fmt: skip
        await send(broker, "risk", cmd, saga_id="late", step="assess_risk", deadline=1_000.0)
        await until(dropped, "the expired command was dropped")
        await send(broker, "risk", cmd, saga_id="on-time", step="assess_risk", deadline=3_000.0)
        on_time = await next_reply(replies)  # the injected clock, not the wall clock, decides
    assert on_time.envelope.saga_id == "on-time"
    assert calls == ["on-time"]
    assert replies.empty()
    assert await broker.queue_depth(queue) == 0  # acked: not coming back


async def test_a_dead_holders_lease_is_taken_over_after_it_expires(
    worker_broker: Broker, broker: Broker, redis_client: aioredis.Redis, namespace: str,
    replies: asyncio.Queue[Received],
) -> None:  # fmt: skip
    handlers, calls = Handlers(), []

    @handlers.handler(AssessRisk)
    async def assess(cmd: AssessRisk, ctx: MessageContext) -> RiskAssessed:
        calls.append(time.monotonic())
        return RiskAssessed(score=3)

    inbox: Inbox = RedisInbox(redis_client, namespace, "risk", ttl_s=3600, contracts=handlers)
    effect_id = "saga-1:assess_risk:forward"
    dead = await inbox.claim(effect_id, lease_s=1.0)  # a worker that died holding the effect
    died_at = time.monotonic()
    short = ParticipantSettings(lease_s=0.4)
    async with running("risk", handlers, worker_broker, redis_client, namespace, short):
        await send(broker, "risk", AssessRisk(account_id="alice", merchant_id="shop",
                                              amount=AMOUNT), step="assess_risk")  # fmt: skip
        got = await next_reply(replies)
    assert got.body == RiskAssessed(score=3)
    assert len(calls) == 1
    assert calls[0] - died_at >= 0.9  # only once the dead holder's lease ran out
    assert not await inbox.renew(dead, lease_s=1.0)  # and the dead holder lost it
