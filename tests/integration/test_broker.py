"""The AMQP adapter against the real broker: declare, publish with confirm, consume, dead-letter."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from contracts import envelope as env
from contracts.envelope import Envelope
from contracts.money import Money
from contracts.topology import Topology
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import Wire, decode, encode
from participants.payments.contracts import AuthorizePayment, payment_contracts
from tests.integration.harness import eventually

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
    decoded_env, decoded_body = decode(wire_of(message), payment_contracts())
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


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_a_daemon_waits_for_a_broker_that_is_not_up_yet(
    rabbit_url: str, topology: Topology
) -> None:
    """A process started before RabbitMQ connects once it comes up, instead of exiting."""
    target = urlsplit(rabbit_url)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port yet
    url = target._replace(netloc=f"{target.username}:{target.password}@127.0.0.1:{port}").geturl()
    connecting = asyncio.create_task(Broker.connect(url, topology, wait_s=60))
    done, _ = await asyncio.wait({connecting}, timeout=1.5)
    assert not done, "it keeps trying while the broker is down"

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port or 5672)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", port)
    try:
        broker = await asyncio.wait_for(connecting, 30)
        assert broker.is_connected
        await broker.close()
    finally:
        server.close()


async def test_an_operator_command_fails_fast_when_the_broker_is_down(topology: Topology) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises((OSError, aio_pika.exceptions.AMQPConnectionError)):
        await Broker.connect(f"amqp://guest:guest@127.0.0.1:{port}/", topology)


async def test_a_dead_letter_that_cannot_be_copied_goes_back_to_its_queue(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a dead letter without its reason: when the copy fails, the message is requeued."""
    t = broker.topology
    queue = t.command_queue("risk")
    await broker.publish(Wire(b"{", kind="x"), exchange="", routing_key=queue)
    got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def handler(message: AbstractIncomingMessage) -> None:
        await got.put(message)

    await broker.consume(queue, handler)
    first = await asyncio.wait_for(got.get(), 10)

    async def broken(*_: object, **__: object) -> None:
        raise ConnectionError("broker going away")

    with monkeypatch.context() as patch:
        patch.setattr(broker, "publish", broken)
        await broker.dead_letter(first, queue, "not_json")
    again = await asyncio.wait_for(got.get(), 10)
    assert again.redelivered
    await broker.dead_letter(again, queue, "not_json")
    dead = t.dead_letter_queue(queue)

    async def dead_lettered() -> bool:
        return await broker.queue_depth(dead) == 1

    assert await eventually(dead_lettered, what="dead-lettered with its reason")
