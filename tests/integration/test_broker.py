"""The AMQP adapter against the real broker: declare, publish with confirm, consume, dead-letter."""

from __future__ import annotations

import asyncio

import pytest
from aio_pika.abc import AbstractIncomingMessage

from contracts import envelope as env
from contracts.envelope import Envelope
from contracts.money import Money
from contracts.payments import AuthorizePayment
from messaging.amqp import Broker, wire_of
from messaging.codec import decode, encode

pytestmark = pytest.mark.integration


async def test_publish_consume_and_dead_letter(broker: Broker) -> None:
    t = broker.topology
    body = AuthorizePayment(account_id="acct-1", amount=Money(minor=500, currency="EUR"))
    envelope = Envelope(kind=body.KIND, saga_id="s1", step="authorize_payment", attempt=1)
    await broker.publish(
        encode(envelope, body), exchange=t.commands_exchange, routing_key="payment"
    )

    got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def handler(message: AbstractIncomingMessage) -> None:
        await got.put(message)

    await broker.consume(t.command_queue("payment"), handler)
    message = await asyncio.wait_for(got.get(), 10)
    decoded_env, decoded_body = decode(wire_of(message))
    assert decoded_env.saga_id == "s1"
    assert decoded_env.attempt == 1
    assert decoded_body == body

    await broker.dead_letter(message, t.command_queue("payment"), "testing")
    dead = t.dead_letter_queue(t.command_queue("payment"))

    async def dead_depth() -> int:
        return await broker.queue_depth(dead)

    for _ in range(100):
        if await dead_depth() == 1:
            break
        await asyncio.sleep(0.05)
    assert await dead_depth() == 1
    assert env.H_REASON  # the header name is part of the contract
