"""A participant whose queue is deleted under it says so on /healthz, and consumes again once
`baton declare` (here ``broker.declare``) has re-created the queue: it never declares itself."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from contracts.envelope import Envelope
from contracts.money import Money
from messaging.settings import Settings
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import encode
from messaging.trust.signing import KeySet
from participants.payments import run_participant
from participants.payments.contracts import AuthorizePayment
from tests.conftest import PARTICIPANTS
from tests.integration.harness import eventually
from tests.support.rabbit_node import free_port

pytestmark = pytest.mark.integration

DEADLINE_S = 8.0


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    """(status, body) of GET /healthz; (0, {}) while nothing listens yet."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0, {}
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def answering(port: int, status: int) -> Any:
    async def check() -> dict[str, Any] | None:
        got, body = await healthz(port)
        return body if got == status else None

    return check


async def send_authorize(broker: Broker, keys: KeySet) -> None:
    envelope = Envelope(
        kind=AuthorizePayment.KIND, saga_id="saga-1", saga="payment", step="authorize_payment",
        phase="forward", effect_id="saga-1:authorize_payment:forward", attempt=1,
    )  # fmt: skip
    body = AuthorizePayment(account_id="alice", amount=Money(minor=100, currency="EUR"))
    t = broker.topology
    await broker.publish(
        keys.keyring("orchestrator").sign(encode(envelope, body)),
        exchange=t.commands_exchange, routing_key="payment",
    )  # fmt: skip


async def test_a_deleted_queue_makes_the_participant_unready_until_it_consumes_again(
    settings: Settings, broker: Broker, keys: KeySet, redis_client: aioredis.Redis
) -> None:
    port = free_port()
    run = settings.model_copy(
        update={"metrics": settings.metrics.model_copy(update={"port": port})}
    )
    t, queue = broker.topology, broker.topology.command_queue("payment")
    replies: asyncio.Queue[str] = asyncio.Queue()

    async def on_reply(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await replies.put(wire_of(message).kind)

    await broker.consume(t.replies_queue, on_reply)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_participant("payment", run, stop, noop=True, keyring=keys.keyring("payment"))
    )
    try:
        ready = await eventually(answering(port, 200), DEADLINE_S, what="ready at start")
        assert ready["checks"]["consumers"] is True
        await broker.delete([queue])

        unready = await eventually(answering(port, 503), DEADLINE_S, what="unready once deleted")
        assert unready["checks"] == {"rabbitmq": True, "redis": True, "consumers": False}
        assert unready["reasons"] == {"consumers": f"consumer cancelled: queue {queue} gone"}
        assert await broker.missing([queue])  # it did not declare the queue itself

        await broker.declare(PARTICIPANTS)
        again = await eventually(answering(port, 200), DEADLINE_S, what="ready once declared")
        assert "reasons" not in again
        assert await broker.consumer_count(queue) == 1  # one consumer: not the old one as well
        await send_authorize(broker, keys)
        kind = await asyncio.wait_for(replies.get(), DEADLINE_S)
        assert kind == "payments.payment_authorized.v1"
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)
