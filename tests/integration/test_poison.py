"""Poison messages against the real broker: bytes that are not text, and handlers that raise.

A message whose ``type`` was not UTF-8 used to kill the consumer's connection (pamqp raised in
aiormq's frame reader), again after every reconnection; a handler that raised requeued its
message forever. Now the first is dead-lettered as undecodable on a connection that stays up,
the second as poison after ``poison_after`` failures.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiormq
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from baton_sdk import Worker
from contracts import envelope as env
from contracts.envelope import Envelope
from contracts.money import Money
from messaging.observability.health import consumer_alive
from messaging.settings import ParticipantSettings, Settings
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import Wire, encode
from messaging.transport.decoding import RawText
from messaging.transport.poison import POISON_AFTER
from messaging.trust.signing import KeySet
from participants.payments import SERVICES, run_participant
from participants.payments.contracts import AuthorizePayment
from tests.integration.harness import eventually, running_baton
from tests.support import raw_amqp as raw

pytestmark = pytest.mark.integration

BAD = b"payments.start_transaction.v1\xff\xfe"


@pytest.fixture
def reconnects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every re-opened connection of the brokers connected from now on."""
    seen: list[str] = []
    connect = aio_pika.connect_robust

    async def counted(*args: Any, **kwargs: Any) -> Any:
        connection = await connect(*args, **kwargs)
        connection.reconnect_callbacks.add(lambda *_: seen.append("reconnect"))
        return connection

    monkeypatch.setattr(aio_pika, "connect_robust", counted)
    return seen


async def publish_raw(url: str, queue: str, wire: Wire, replace: dict[str, bytes]) -> None:
    """Publish ``wire`` with some short string properties swapped for raw bytes."""
    props = {
        "content_type": b"application/json",
        "message_id": (wire.message_id or "").encode(),
        "correlation_id": (wire.correlation_id or "").encode(),
        "message_type": (wire.kind or "").encode(),
        "headers": raw.table((k.encode(), raw.tagged(v)) for k, v in wire.headers.items()),
    }
    props = {k: v for k, v in props.items() if v} | replace
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.basic_publish(
            wire.body, routing_key=queue, properties=raw.RawProperties(raw.properties(props))
        )
    finally:
        await connection.close()


async def reasons(broker: Broker, queue: str, count: int) -> list[str]:
    """The reasons of ``queue``'s first ``count`` dead letters, once there are that many."""
    dead = broker.topology.dead_letter_queue(queue)

    async def arrived() -> bool:
        return await broker.queue_depth(dead) >= count

    await eventually(arrived, 15, f"{count} dead letter(s) from {queue}")
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(dead, passive=True)
        found = []
        for _ in range(count):
            message = await declared.get(no_ack=False)
            found.append(str(wire_of(message).headers[env.H_REASON]))
        return found
    finally:
        await channel.close()


def start_wire(keys: KeySet, kind: str) -> Wire:
    """A start signed over ``kind``: the text the orchestrator makes of the raw bytes."""
    envelope = Envelope(kind="payments.start_transaction.v1", saga_id="-")
    body = b'{"idempotency_key": "k1"}'
    wire = Wire(body, kind, "m-1", None, headers=envelope.headers())
    return keys.keyring("cli").sign(wire)


async def test_a_start_whose_type_is_not_utf8_is_dead_lettered_on_a_live_connection(
    broker: Broker,
    redis_client: aioredis.Redis,
    settings: Settings,
    keys: KeySet,
    reconnects: list[str],
) -> None:
    broker.connection.reconnect_callbacks.add(lambda *_: reconnects.append("orchestrator"))
    t = broker.topology
    async with running_baton(broker, redis_client, settings, keys=keys) as baton:
        alive = consumer_alive(broker, baton.orchestrator.failures)
        url = str(settings.rabbit.url)
        await publish_raw(url, t.start_queue, start_wire(keys, RawText(BAD)), {"message_type": BAD})
        unsigned = Wire(b"{}", "x", "m-2", None, headers={env.H_SAGA_ID: "s"})
        await publish_raw(url, t.start_queue, unsigned, {"message_id": b"m-\xff"})
        found = sorted(await reasons(broker, t.start_queue, 2))
        assert found[0].startswith("undecodable_property: property type"), found
        assert found[1]  # unsigned, or undecodable: either way refused with a reason
        assert not reconnects
        assert await broker.consumer_count(t.start_queue) == 1
        assert await alive()


async def test_a_reply_with_a_header_that_is_not_utf8_is_dead_lettered_once(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    t = broker.topology
    async with running_baton(broker, redis_client, settings, keys=keys) as baton:
        envelope = Envelope(
            kind="payments.payment_authorized.v1",
            saga_id="s1",
            saga="payment",
            step="authorize_payment",
            effect_id="s1:a:forward",
            attempt=1,
        )
        wire = keys.keyring("payment").sign(
            Wire(b'{"hold_id": "h"}', envelope.kind, "m-3", "s1", headers=envelope.headers())
        )
        headers = {**wire.headers, env.H_TRACEPARENT: raw.Raw(b"00-\xff")}  # not signed
        await publish_raw(
            str(settings.rabbit.url),
            t.replies_queue,
            Wire(wire.body, wire.kind, wire.message_id, wire.correlation_id, headers=headers),
            {},
        )
        assert (await reasons(broker, t.replies_queue, 1))[0].startswith("undecodable_header")
        handled = baton.orchestrator.metrics.registry.get_sample_value(
            "baton_messages_handled_total", {"queue": t.replies_queue, "outcome": "requeued"}
        )
        assert not handled  # never requeued: refused at once


async def test_a_command_whose_type_is_not_utf8_leaves_the_participant_up(
    broker: Broker, settings: Settings, keys: KeySet, reconnects: list[str]
) -> None:
    t = broker.topology
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_participant("payment", settings, stop, keyring=keys.keyring("payment"))
    )
    queue = t.command_queue("payment")
    try:
        await eventually(lambda: broker.consumer_count(queue), 15, "the participant consuming")
        envelope = Envelope(
            kind="payments.authorize_payment.v1",
            saga_id="s1",
            saga="payment",
            step="authorize_payment",
            effect_id="s1:a:forward",
            attempt=1,
        )
        body = AuthorizePayment(account_id="a", amount=Money(minor=1, currency="EUR"))
        wire = encode(envelope.model_copy(update={"kind": RawText(BAD)}), body)
        signed = keys.keyring("orchestrator").sign(wire)
        await publish_raw(str(settings.rabbit.url), queue, signed, {"message_type": BAD})
        assert (await reasons(broker, queue, 1))[0].startswith("undecodable_property")
        assert not reconnects
        assert not task.done()
        assert await broker.consumer_count(queue) == 1
    finally:
        stop.set()
        await task


async def test_a_message_its_handler_always_fails_on_goes_to_the_dead_letter_queue(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    t = broker.topology
    queue = t.command_queue("risk")  # any queue with a dead-letter queue will do
    calls: list[str] = []

    async def buggy(wire: Wire) -> str:
        calls.append(wire.message_id or "")
        raise KeyError("bug")

    async with running_baton(broker, redis_client, settings, keys=keys) as baton:
        await broker.consume(queue, baton.orchestrator._callback(queue, buggy))
        await broker.publish(Wire(b"{}", "k", "poison-1"), exchange="", routing_key=queue)
        assert await reasons(broker, queue, 1) == ["poison: KeyError"]
        assert calls == ["poison-1"] * POISON_AFTER


async def test_a_dependency_failure_is_requeued_without_counting(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> None:
    t = broker.topology
    queue = t.command_queue("risk")
    calls: list[str] = []

    async def redis_down(wire: Wire) -> str:
        calls.append(wire.message_id or "")
        if len(calls) <= POISON_AFTER + 2:
            raise ConnectionError("redis is down")
        return "applied"

    async with running_baton(broker, redis_client, settings, keys=keys) as baton:
        await broker.consume(queue, baton.orchestrator._callback(queue, redis_down))
        await broker.publish(Wire(b"{}", "k", "outage-1"), exchange="", routing_key=queue)

        async def retried() -> bool:
            return len(calls) > POISON_AFTER + 2

        await eventually(retried, 15, "retried past the poison limit")
        await eventually(lambda: _empty(broker, queue), 15, "acked at last")
        assert await broker.queue_depth(t.dead_letter_queue(queue)) == 0


async def _empty(broker: Broker, queue: str) -> bool:
    return await broker.queue_depth(queue) == 0


@pytest.fixture
async def worker_broker(rabbit_url: str, broker: Broker) -> AsyncIterator[Broker]:
    connected = await Broker.connect(rabbit_url, broker.topology, prefetch=8)
    yield connected
    await connected.close()


async def test_a_command_the_worker_crashes_on_is_dead_lettered_as_poison(
    broker: Broker,
    worker_broker: Broker,
    redis_client: aioredis.Redis,
    settings: Settings,
    keys: KeySet,
) -> None:
    name = "payment"
    handlers = SERVICES[name](redis_client, settings.namespace)
    worker = Worker(
        name,
        handlers,
        worker_broker,
        redis_client,
        settings.namespace,
        ParticipantSettings(),
        keyring=keys.keyring(name),
        rng=random.Random(1),
    )
    crashes: list[str] = []

    async def crashing(message: AbstractIncomingMessage) -> None:
        crashes.append(message.message_id or "")
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a bug the fuzz found")

    worker._process = crashing  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        queue = broker.topology.command_queue(name)
        await broker.publish(Wire(b"{}", "k", "crash-1"), exchange="", routing_key=queue)
        assert await reasons(broker, queue, 1) == ["poison: UnicodeDecodeError"]
        assert crashes == ["crash-1"] * POISON_AFTER
        assert await consumer_alive(worker_broker, worker.failures)()
    finally:
        stop.set()
        await task
