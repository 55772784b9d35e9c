"""The checkout package's Python participants in the SDK Worker, over real RabbitMQ and Redis.

Commands are published signed as the orchestrator would send them; replies are heard on the
replies queue, verified and decoded with the package's compiled contracts. The shipping
participant is Node.js: where a saga needs a shipment, the test writes the hash the README
agrees on, as that participant would.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Literal
from unittest.mock import ANY

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from baton_sdk import MessageContext, Worker
from contracts import envelope as env
from contracts.base import Command, Contract, StepFailed
from contracts.envelope import Envelope
from contracts.money import Money
from contracts.topology import Topology
from examples.checkout import models as m
from examples.checkout.invariants import check, snapshot
from examples.checkout.keys import InventoryKeys, ShipmentKeys
from examples.checkout.models import checkout_contracts
from examples.checkout.participants import PARTICIPANTS
from examples.checkout.participants.inventory import InventoryService
from examples.checkout.participants.payment import Wallet
from examples.checkout.seed import (
    FRAUD_MINOR,
    ORDER_MINOR,
    POOR,
    POOR_MINOR,
    REVIEW_MINOR,
    SOLD_OUT,
    CheckoutWorld,
    FailAt,
    seed,
)
from messaging.errors import StepRejected
from messaging.settings import ParticipantSettings
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import decode, encode
from messaging.trust.signing import KeySet

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0
NAMES = tuple(PARTICIPANTS)
KEYS = KeySet.generate(["orchestrator", *NAMES])
ORCHESTRATOR = KEYS.keyring("orchestrator")


@dataclass(frozen=True)
class Received:
    envelope: Envelope
    body: Contract


class Replies:
    """Every reply heard, verified and decoded; waited for by saga, step, phase and attempt."""

    def __init__(self) -> None:
        self.heard: list[Received] = []
        self._arrived = asyncio.Condition()

    async def on_reply(self, message: AbstractIncomingMessage) -> None:
        wire = wire_of(message)
        assert ORCHESTRATOR.verify(wire) == wire.headers[env.H_SIGNER]  # signed by its sender
        envelope, body = decode(wire, checkout_contracts())
        await message.ack()
        async with self._arrived:
            self.heard.append(Received(envelope, body))
            self._arrived.notify_all()

    async def of(self, sent: Envelope, *, copies: int = 1) -> list[Received]:
        """The replies to ``sent`` (same effect, phase and attempt), once ``copies`` came."""

        def match() -> list[Received]:
            key = (sent.effect_id, sent.phase, sent.attempt)
            return [
                r
                for r in self.heard
                if (r.envelope.effect_id, r.envelope.phase, r.envelope.attempt) == key
            ]

        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(match()) >= copies), DEADLINE_S
            )
        return match()


@pytest.fixture
async def broker(rabbit_url: str, topology: Topology) -> AsyncIterator[Broker]:
    """The checkout participants' topology under this test's namespace (the suite's own
    ``broker`` fixture declares the payment participants)."""
    connected = await Broker.connect(rabbit_url, topology, prefetch=32)
    await connected.declare(NAMES)
    yield connected
    await connected.delete(topology.all_queues(NAMES), topology.exchanges)
    await connected.close()


@pytest.fixture
async def replies(broker: Broker) -> Replies:
    heard = Replies()
    await broker.consume(broker.topology.replies_queue, heard.on_reply)
    return heard


@pytest.fixture
async def world(redis_client: aioredis.Redis, namespace: str) -> CheckoutWorld:
    return await seed(redis_client, namespace, run_id="t", stock=10, balance_minor=100_000)


@pytest.fixture
async def workers(
    broker: Broker,
    rabbit_url: str,
    topology: Topology,
    redis_client: aioredis.Redis,
    namespace: str,
) -> AsyncIterator[None]:
    """All five participants running, each in its own Worker on one participant connection."""
    connected = await Broker.connect(rabbit_url, topology, prefetch=8)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            Worker(
                name,
                factory(redis_client, namespace),
                connected,
                redis_client,
                namespace,
                ParticipantSettings(),
                keyring=KEYS.keyring(name),
                rng=random.Random(7),
            ).run(stop)
        )
        for name, factory in PARTICIPANTS.items()
    ]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
        await connected.close()


@dataclass
class Orchestrator:
    """Sends commands as the orchestrator does (effect ids ``saga:step:phase``)."""

    broker: Broker
    replies: Replies

    async def send(
        self,
        participant: str,
        kind: str,
        body: dict[str, Any],
        saga: str,
        step: str,
        *,
        phase: env.Phase = "forward",
        attempt: int = 1,
    ) -> Envelope:
        command = checkout_contracts().require(kind, Command).model_validate(body)
        envelope = Envelope(
            kind=kind,
            saga_id=saga,
            saga="checkout",
            step=step,
            phase=phase,
            effect_id=f"{saga}:{step}:{phase}",
            attempt=attempt,
            compensates=f"{saga}:{step}:forward" if phase == "compensate" else "",
        )
        t = self.broker.topology
        await self.broker.publish(
            ORCHESTRATOR.sign(encode(envelope, command)),
            exchange=t.commands_exchange,
            routing_key=participant,
        )
        return envelope

    async def call(self, *command: Any, **options: Any) -> dict[str, Any]:
        """Send (``send``'s arguments); the reply's body, with ``kind`` added."""
        reply = (await self.replies.of(await self.send(*command, **options)))[0].body
        return {"kind": reply.KIND, **reply.model_dump()}

    async def undo(self, participant: str, kind: str, saga: str, step: str) -> dict[str, Any]:
        """The compensation of ``saga``'s ``step`` (its body is empty)."""
        return await self.call(participant, kind, {}, saga, step, phase="compensate")


@pytest.fixture
def orchestrator(broker: Broker, replies: Replies, workers: None) -> Orchestrator:
    return Orchestrator(broker, replies)


def eur(minor: int) -> dict[str, Any]:
    return {"minor": minor, "currency": "EUR"}


def refusal(reason: str) -> dict[str, Any]:
    """A final refusal, as ``Orchestrator.call`` returns it."""
    return {"kind": StepFailed.KIND, "reason": reason, "retriable": False, "detail": ANY}


# -- each participant: success, refusal, compensation ---------------------------------------


async def test_inventory_reserves_refuses_and_releases(
    orchestrator: Orchestrator, world: CheckoutWorld, redis_client: aioredis.Redis, namespace: str
) -> None:
    inventory, sku, step = InventoryService(redis_client, namespace), world.skus[0], "reserve"
    reserve = {"sku": sku, "quantity": 4, "order_id": "o1"}
    got = await orchestrator.call("inventory", m.RESERVE_INVENTORY, reserve, "s1", step)
    assert got == {"kind": m.INVENTORY_RESERVED, "reservation_id": ANY}
    assert await inventory.available(sku) == 6
    for n, body in enumerate([{**reserve, "quantity": 7}, {**reserve, "sku": SOLD_OUT}]):
        refused = await orchestrator.call("inventory", m.RESERVE_INVENTORY, body, f"r{n}", step)
        assert refused == refusal("out_of_stock")
    assert await inventory.available(sku) == 6  # a refusal takes nothing
    released = await orchestrator.undo("inventory", m.RELEASE_INVENTORY, "s1", step)
    assert released == {"kind": m.INVENTORY_RELEASED, "released": True}
    assert await inventory.available(sku) == 10
    again = await orchestrator.call(
        "inventory", m.RELEASE_INVENTORY, {}, "s1", step, phase="compensate", attempt=2
    )
    assert again == released  # the stored outcome, not a second release
    assert await inventory.available(sku) == 10


async def test_fraud_scores_and_refuses_above_the_threshold(orchestrator: Orchestrator) -> None:
    body = {"customer_id": "cust-0001", "total": eur(ORDER_MINOR)}
    screened = await orchestrator.call("fraud", m.SCREEN_ORDER, body, "s1", "screen")
    assert screened["kind"] == m.ORDER_SCREENED
    assert 0 <= screened["score"] <= 29  # the customer's part only: 25.00 adds nothing
    big = {**body, "total": eur(FRAUD_MINOR)}
    refused = await orchestrator.call("fraud", m.SCREEN_ORDER, big, "s2", "screen")
    assert refused == refusal("fraud_suspected")


async def test_review_approves_and_declines_blocked_orders(orchestrator: Orchestrator) -> None:
    body = {"order_id": "o1", "total": eur(REVIEW_MINOR)}
    approved = await orchestrator.call("review", m.REVIEW_ORDER, body, "s1", "review")
    assert approved == {"kind": m.ORDER_REVIEWED, "reviewer": "auto-review"}
    blocked = {**body, "order_id": "blocked-o2"}
    refused = await orchestrator.call("review", m.REVIEW_ORDER, blocked, "s2", "review")
    assert refused == refusal("review_declined")


async def test_payment_authorizes_refuses_voids_and_captures(
    orchestrator: Orchestrator, world: CheckoutWorld, redis_client: aioredis.Redis, namespace: str
) -> None:
    wallet, customer = Wallet(redis_client, namespace), world.customers[0]
    auth = {"customer_id": customer, "total": eur(30_000)}
    held = await orchestrator.call("wallet", m.AUTHORIZE_PAYMENT, auth, "s1", "authorize")
    assert held == {"kind": m.PAYMENT_AUTHORIZED, "hold_id": ANY}
    assert await wallet.balance(customer) == {"balance": 70_000, "held": 30_000, "captured": 0}
    poor = {"customer_id": POOR, "total": eur(POOR_MINOR + 1)}
    refused = await orchestrator.call("wallet", m.AUTHORIZE_PAYMENT, poor, "s2", "authorize")
    assert refused == refusal("insufficient_funds")
    assert await wallet.balance(POOR) == {"balance": POOR_MINOR, "held": 0, "captured": 0}
    # checked against the hold, not the command: another amount, or another saga, is refused
    capture = {"hold_id": held["hold_id"], "total": eur(30_000)}
    wrong = [({**capture, "total": eur(29_999)}, "s1", "capture-1"), (capture, "s9", "capture")]
    for body, saga, step in wrong:
        refused = await orchestrator.call("wallet", m.CAPTURE_PAYMENT, body, saga, step)
        assert refused == refusal("hold_not_capturable")
    captured = await orchestrator.call("wallet", m.CAPTURE_PAYMENT, capture, "s1", "capture")
    assert captured == {"kind": m.PAYMENT_CAPTURED, "capture_id": ANY}
    assert await wallet.balance(customer) == {"balance": 70_000, "held": 0, "captured": 30_000}
    # the void of a captured hold gives nothing back; a fresh hold's void gives it all back
    void = await orchestrator.undo("wallet", m.VOID_PAYMENT, "s1", "authorize")
    assert void == {"kind": m.PAYMENT_VOIDED, "released": False}
    await orchestrator.call("wallet", m.AUTHORIZE_PAYMENT, auth, "s3", "authorize")
    assert await wallet.balance(customer) == {"balance": 40_000, "held": 30_000, "captured": 30_000}
    void = await orchestrator.undo("wallet", m.VOID_PAYMENT, "s3", "authorize")
    assert void == {"kind": m.PAYMENT_VOIDED, "released": True}
    assert await wallet.balance(customer) == {"balance": 70_000, "held": 0, "captured": 30_000}


async def test_notification_confirms_each_order_once(
    orchestrator: Orchestrator, redis_client: aioredis.Redis, namespace: str
) -> None:
    sent = [
        await orchestrator.call(
            "notification", m.SEND_CONFIRMATION, {"order_id": order}, saga, "confirm"
        )
        for order, saga in [("o1", "s1"), ("o1", "s2"), ("o2", "s3")]
    ]
    assert sent[0] == sent[1]  # a second effect for the same order: the message already sent
    assert sent[2] != sent[0]
    confirmed = (await snapshot(redis_client, namespace)).confirmations
    assert {order: c.saga_id for order, c in confirmed.items()} == {"o1": "s1", "o2": "s3"}


# -- the protocol's hard cases, on the participants that move stock and money ---------------

RESERVE = ("inventory", m.RESERVE_INVENTORY, {"sku": "sku-000", "quantity": 3, "order_id": "o1"})
AUTHORIZE = ("wallet", m.AUTHORIZE_PAYMENT, {"customer_id": "cust-0000", "total": eur(40_000)})
UNDO = {m.RESERVE_INVENTORY: m.RELEASE_INVENTORY, m.AUTHORIZE_PAYMENT: m.VOID_PAYMENT}


async def untouched(redis: aioredis.Redis, namespace: str) -> tuple[int | None, dict[str, int]]:
    """The stock and the wallet the hard cases use."""
    stock = await InventoryService(redis, namespace).available("sku-000")
    return stock, await Wallet(redis, namespace).balance("cust-0000")


UNTOUCHED = (10, {"balance": 100_000, "held": 0, "captured": 0})


@pytest.mark.parametrize("command", [RESERVE, AUTHORIZE], ids=["inventory", "wallet"])
async def test_a_compensation_before_its_command_cancels_the_late_command(
    orchestrator: Orchestrator,
    world: CheckoutWorld,
    redis_client: aioredis.Redis,
    namespace: str,
    command: tuple[str, str, dict[str, Any]],
) -> None:
    participant, kind, body = command
    undone = await orchestrator.undo(participant, UNDO[kind], "s1", "step")
    assert list(undone.values())[1:] == [False]  # nothing to undo, and it succeeds
    late = await orchestrator.call(participant, kind, body, "s1", "step")
    assert late == refusal("cancelled")
    assert await untouched(redis_client, namespace) == UNTOUCHED
    report = await check(redis_client, namespace)
    assert report.ok, report


async def test_the_handlers_own_marker_refuses_a_late_command_without_the_inbox(
    redis_client: aioredis.Redis, namespace: str, world: CheckoutWorld
) -> None:
    """Belt and braces: even without the SDK's tombstone (expired, or another inbox), a
    release that ran first leaves a marker the late reservation finds."""
    inventory = InventoryService(redis_client, namespace)
    forward = MessageContext(
        saga_id="s1", saga="checkout", step="reserve", phase="forward", effect_id="s1:do",
        compensates="", attempt=1, traceparent="", message_id="m",
    )  # fmt: skip
    undo = replace(forward, phase="compensate", effect_id="s1:undo", compensates="s1:do")
    assert await inventory.release_effect(undo) is False
    cmd = checkout_contracts().require(m.RESERVE_INVENTORY, Command).model_validate(RESERVE[2])
    with pytest.raises(StepRejected, match="cancelled"):
        await inventory.reserve(cmd, forward)  # type: ignore[arg-type]
    assert await untouched(redis_client, namespace) == UNTOUCHED


async def test_a_rerun_of_a_compensation_answers_as_its_first_run(
    redis_client: aioredis.Redis, namespace: str, world: CheckoutWorld
) -> None:
    """A crash between the undo and its recorded outcome runs the handler again under the
    same effect id: it must answer what the first run did, and undo nothing twice."""
    inventory, wallet = InventoryService(redis_client, namespace), Wallet(redis_client, namespace)
    forward = MessageContext(
        saga_id="s1", saga="checkout", step="reserve", phase="forward", effect_id="s1:do",
        compensates="", attempt=1, traceparent="", message_id="m",
    )  # fmt: skip
    cmd = checkout_contracts().require(m.RESERVE_INVENTORY, Command).model_validate(RESERVE[2])
    await inventory.reserve(cmd, forward)  # type: ignore[arg-type]
    undo = replace(forward, phase="compensate", effect_id="s1:undo", compensates="s1:do")
    assert [await inventory.release_effect(undo) for _ in range(2)] == [True, True]
    other = replace(undo, effect_id="s1:undo-2")  # another generation: it released nothing
    assert await inventory.release_effect(other) is False
    total = Money(minor=40_000, currency="EUR")
    await wallet.authorize("s1:hold", "s1", "cust-0000", total)
    assert [await wallet.void("s1:hold", "s1", "s1:void") for _ in range(2)] == [True, True]
    assert await wallet.void("s1:hold", "s1", "s1:void-2") is False
    assert await untouched(redis_client, namespace) == UNTOUCHED


@pytest.mark.parametrize("command", [RESERVE, AUTHORIZE], ids=["inventory", "wallet"])
async def test_a_duplicate_delivery_has_its_effect_once(
    orchestrator: Orchestrator,
    world: CheckoutWorld,
    redis_client: aioredis.Redis,
    namespace: str,
    command: tuple[str, str, dict[str, Any]],
) -> None:
    first = await orchestrator.send(*command, "s1", "step", attempt=1)
    await orchestrator.send(*command, "s1", "step", attempt=1)  # an outbox re-publish
    retry = await orchestrator.send(*command, "s1", "step", attempt=2)  # after a lost reply
    heard = await orchestrator.replies.of(first, copies=2) + await orchestrator.replies.of(retry)
    assert heard[0].body == heard[1].body == heard[2].body  # the stored outcome, re-stamped
    assert not isinstance(heard[0].body, StepFailed)
    assert [r.envelope.attempt for r in heard] == [1, 1, 2]
    stock, wallet = await untouched(redis_client, namespace)
    assert stock == (7 if command is RESERVE else 10)
    assert wallet["held"] == (40_000 if command is AUTHORIZE else 0)


# -- a mixed run: every saga through every participant, then the invariants ------------------

Shipping = Literal["ok", "refused", "timeout"]  # what the Node participant does with a saga


async def create_shipment(
    redis: aioredis.Redis, namespace: str, saga: str, order_id: str, status: str
) -> None:
    """What the Node.js shipping participant writes (README: the agreed key layout)."""
    effect_id = f"{saga}:create_shipment:forward"
    await redis.hset(
        ShipmentKeys(namespace).shipment(effect_id),
        mapping={"status": status, "saga_id": saga, "order_id": order_id, "effect_id": effect_id},
    )


@dataclass
class Saga:
    """One checkout saga, driven as the engine would: forward, or compensated on a refusal."""

    orchestrator: Orchestrator
    redis: aioredis.Redis
    namespace: str
    saga: str
    order: dict[str, Any]
    shipping: Shipping = "ok"

    async def step(self, participant: str, kind: str, step: str, *fields: str) -> dict[str, Any]:
        body = {f: self.order[f] for f in fields}
        return await self.orchestrator.call(participant, kind, body, self.saga, step)

    async def ok(self, participant: str, kind: str, step: str, *fields: str) -> bool:
        reply = await self.step(participant, kind, step, *fields)
        return bool(reply["kind"] != StepFailed.KIND)

    async def compensate(self, done: list[tuple[str, str, str]]) -> str:
        for participant, kind, step in reversed(done):
            if participant == "shipping":  # what the Node participant's cancellation writes
                order = self.order["order_id"]
                await create_shipment(self.redis, self.namespace, self.saga, order, "cancelled")
            else:
                await self.orchestrator.undo(participant, kind, self.saga, step)
        return "compensated"

    async def run(self) -> str:
        done: list[tuple[str, str, str]] = []
        reserved, screened = await asyncio.gather(
            self.ok("inventory", m.RESERVE_INVENTORY, "reserve", "sku", "quantity", "order_id"),
            self.ok("fraud", m.SCREEN_ORDER, "screen", "customer_id", "total"),
        )
        if reserved:
            done.append(("inventory", m.RELEASE_INVENTORY, "reserve"))
        if not (reserved and screened):
            return await self.compensate(done)
        if self.order["total"]["minor"] >= 50_000 and not await self.ok(
            "review", m.REVIEW_ORDER, "review", "order_id", "total"
        ):
            return await self.compensate(done)
        hold = await self.step("wallet", m.AUTHORIZE_PAYMENT, "authorize", "customer_id", "total")
        if hold["kind"] == StepFailed.KIND:
            return await self.compensate(done)
        done.append(("wallet", m.VOID_PAYMENT, "authorize"))
        if self.shipping == "refused":  # the Node participant said no: it wrote nothing
            return await self.compensate(done)
        order = self.order["order_id"]
        await create_shipment(self.redis, self.namespace, self.saga, order, "created")
        if self.shipping == "timeout":  # booked, but its reply never came: all undone
            return await self.compensate([*done, ("shipping", "", "create_shipment")])
        self.order["hold_id"] = hold["hold_id"]
        assert await self.ok("wallet", m.CAPTURE_PAYMENT, "capture", "hold_id", "total")
        assert await self.ok("notification", m.SEND_CONFIRMATION, "confirm", "order_id")
        return "completed"


# (where the seed makes the order fail, whether it is reviewed, what shipping does)
PLAN: list[tuple[FailAt | None, bool, Shipping]] = [
    (None, False, "ok"),
    (None, True, "ok"),
    ("inventory", False, "ok"),
    ("fraud", False, "ok"),
    ("review", False, "ok"),
    ("payment", False, "ok"),
    (None, False, "refused"),
    ("payment", True, "ok"),
    (None, True, "timeout"),
    (None, False, "ok"),
    (None, False, "ok"),
]


async def test_a_mixed_run_leaves_the_books_balanced(
    orchestrator: Orchestrator, world: CheckoutWorld, redis_client: aioredis.Redis, namespace: str
) -> None:
    sagas = [
        Saga(
            orchestrator,
            redis_client,
            namespace,
            f"saga-{n}",
            world.order(n, fails_at=at, review=review),
            shipping,
        )
        for n, (at, review, shipping) in enumerate(PLAN)
    ]
    statuses = await asyncio.gather(*(s.run() for s in sagas))
    outcomes = {s.saga: status for s, status in zip(sagas, statuses, strict=True)}
    failing = {f"saga-{n}" for n, (at, _, ship) in enumerate(PLAN) if at or ship != "ok"}
    assert {s for s, status in outcomes.items() if status == "compensated"} == failing
    for report in (
        await check(redis_client, namespace, outcomes),
        await check(redis_client, namespace),
    ):
        assert report.ok, report
    completed = [s.order for s in sagas if outcomes[s.saga] == "completed"]
    wallet = Wallet(redis_client, namespace)
    captured = [(await wallet.balance(c))["captured"] for c in world.customers]
    assert sum(captured) == sum(order["total"]["minor"] for order in completed)
    inventory = InventoryService(redis_client, namespace)
    for sku in world.skus:
        shipped = sum(order["quantity"] for order in completed if order["sku"] == sku)
        assert await inventory.available(sku) == world.stock - shipped
    # and the invariants see what is wrong: a compensated saga that kept its stock
    reservation = InventoryKeys(namespace).reservation("saga-3:reserve:forward")
    await redis_client.hset(reservation, "status", "reserved")
    report = await check(redis_client, namespace, outcomes)
    assert report.reservations_left == ["saga-3"]
    assert report.stock_imbalance == {world.order(3)["sku"]: 1}
