"""Dead letters can be inspected without losing them, replayed to their source queue, and are
copied once however often RabbitMQ redelivers them."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from baton import deadletters
from contracts import envelope as env
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire
from messaging.transport.dead_marks import RedisDeadLetterMarks
from participants.payments.contracts import StartTransaction
from tests.integration.harness import eventually

pytestmark = pytest.mark.integration


async def test_peek_keeps_and_replay_moves_back_without_reasons(broker: Broker) -> None:
    t = broker.topology
    dead = deadletters.dead_queue_of(t, "start")
    assert dead == t.dead_letter_queue(t.start_queue)
    bad = Wire(
        b"{",
        kind=StartTransaction.KIND,
        headers={
            env.H_REASON: "not_json: broken",
            env.H_SOURCE_QUEUE: t.start_queue,
        },
    )
    for _ in range(3):
        await broker.publish(bad, exchange=t.dead_letter_exchange, routing_key=dead)

    async def depth_is(queue: str, count: int) -> bool:
        return await broker.queue_depth(queue) == count

    assert await eventually(lambda: depth_is(dead, 3), what="three dead letters")
    seen = await deadletters.peek(broker, dead, limit=10)
    assert [letter.reason for letter in seen] == ["not_json: broken"] * 3
    assert all(letter.source_queue == t.start_queue for letter in seen)
    assert await eventually(lambda: depth_is(dead, 3), what="peeking removes nothing")

    assert await deadletters.replay(broker, dead, limit=2) == 2
    assert await eventually(lambda: depth_is(t.start_queue, 2), what="replayed to the source")
    assert await broker.queue_depth(dead) == 1
    channel = await broker.connection.channel()
    queue = await channel.declare_queue(t.start_queue, passive=True)
    message = await queue.get(no_ack=True)
    assert env.H_REASON not in (message.headers or {}), "a replayed message is judged afresh"
    await channel.close()


def test_queue_names_are_accepted_short_or_full() -> None:
    from contracts.topology import Topology

    t = Topology(namespace="ns.")
    assert deadletters.dead_queue_of(t, "cmd.payment") == "ns.baton.dead.cmd.payment"
    assert deadletters.dead_queue_of(t, "ns.baton.cmd.payment") == "ns.baton.dead.cmd.payment"
    assert deadletters.dead_queue_of(t, "ns.baton.dead.replies") == "ns.baton.dead.replies"


# -- a dead letter is copied once per life --------------------------------------------------


class LostAck:
    """A delivery whose ack never reaches RabbitMQ (the broker was killed right after it)."""

    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)

    async def ack(self, multiple: bool = False) -> None:
        """Lost on the way: the broker redelivers the message."""


@pytest.fixture
async def marked(
    broker: Broker, rabbit_url: str, redis_client: aioredis.Redis, namespace: str
) -> AsyncIterator[Broker]:
    """A broker with the deployment's dead-letter marks (``broker`` declared the topology)."""
    marks = RedisDeadLetterMarks(redis_client, namespace)
    connected = await Broker.connect(rabbit_url, broker.topology, prefetch=8, dead_marks=marks)
    yield connected
    await connected.close()


@asynccontextmanager
async def delivery(broker: Broker, queue: str) -> AsyncIterator[AbstractIncomingMessage]:
    """The next message of ``queue``, unacked; closing its channel redelivers it if unsettled."""
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)

        async def next_message() -> AbstractIncomingMessage | None:
            return await declared.get(no_ack=False, fail=False)

        yield await eventually(next_message, what=f"a message on {queue}")
    finally:
        await channel.close()


async def depths(broker: Broker, *queues: str) -> list[int]:
    return [await broker.queue_depth(q) for q in queues]


async def test_a_redelivered_dead_letter_is_copied_once(broker: Broker, marked: Broker) -> None:
    """RabbitMQ killed right after the ack: the redelivery is acked, not copied again."""
    t = broker.topology
    queue = t.command_queue("risk")
    dead = t.dead_letter_queue(queue)
    bad = Wire(b"{", kind="x", message_id="m-1", headers={"h": "v"})
    await broker.publish(bad, exchange="", routing_key=queue)
    async with delivery(marked, queue) as first:
        assert not first.redelivered
        await marked.dead_letter(cast(AbstractIncomingMessage, LostAck(first)), queue, "not_json")
    async with delivery(marked, queue) as again:
        assert again.redelivered
        await marked.dead_letter(again, queue, "not_json")
    assert await depths(broker, queue, dead) == [0, 1]
    (letter,) = await deadletters.peek(broker, dead, limit=10)
    assert letter.reason == "not_json"


async def test_a_dead_letter_delivered_again_without_the_redelivered_flag_is_copied_once(
    broker: Broker, marked: Broker
) -> None:
    """After a broker restart a classic queue's unacked message comes back unflagged: the
    cause of test_everything_mixed's 19 dead letters for 10 injected."""
    t = broker.topology
    queue = t.command_queue("risk")
    dead = t.dead_letter_queue(queue)
    bad = Wire(b"{", kind="x", message_id="m-3")
    await broker.publish(bad, exchange="", routing_key=queue)
    async with delivery(marked, queue) as first:
        await marked.dead_letter(first, queue, "not_json")
    await broker.publish(bad, exchange="", routing_key=queue)  # the restart's unflagged copy
    async with delivery(marked, queue) as again:
        assert not again.redelivered
        await marked.dead_letter(again, queue, "not_json")
    assert await depths(broker, queue, dead) == [0, 1]


async def test_a_replayed_dead_letter_is_copied_again(broker: Broker, marked: Broker) -> None:
    """A replay starts a new life: copied again if still bad, even when it is redelivered."""
    t = broker.topology
    queue = t.command_queue("pci")
    dead = t.dead_letter_queue(queue)
    await broker.publish(Wire(b"{", kind="x", message_id="m-2"), exchange="", routing_key=queue)
    async with delivery(marked, queue) as first:
        await marked.dead_letter(first, queue, "not_json")
    assert await deadletters.replay(marked, dead, limit=10) == 1
    async with delivery(marked, queue) as replayed:
        assert not replayed.redelivered
        await marked.dead_letter(replayed, queue, "still_not_json")
    assert await depths(broker, queue, dead) == [0, 1]

    assert await deadletters.replay(marked, dead, limit=10) == 1
    async with delivery(marked, queue) as unsettled:  # its consumer dies before deciding
        assert unsettled.message_id == "m-2"
    async with delivery(marked, queue) as redelivered:
        assert redelivered.redelivered
        await marked.dead_letter(redelivered, queue, "not_json_either")
    assert await depths(broker, queue, dead) == [0, 1]
    assert [letter.reason for letter in await deadletters.peek(broker, dead, 10)] == [
        "not_json_either"
    ]


async def test_without_redis_a_redelivered_dead_letter_waits_in_its_queue(
    broker: Broker, rabbit_url: str, namespace: str
) -> None:
    """Marks unreachable: whether copied before cannot be known, so the message goes back
    to its queue (first delivery or not), never lost and never copied twice."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    nowhere = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    marks = RedisDeadLetterMarks(nowhere, namespace, timeout_s=1.0)
    down = await Broker.connect(rabbit_url, broker.topology, dead_marks=marks)
    t = broker.topology
    queue, other = t.command_queue("transaction"), t.command_queue("payment")
    try:
        await broker.publish(Wire(b"{", kind="x", message_id="a"), exchange="", routing_key=queue)
        async with delivery(down, queue) as first:
            await down.dead_letter(first, queue, "not_json")
        assert await depths(broker, queue, t.dead_letter_queue(queue)) == [1, 0]

        await broker.publish(Wire(b"{", kind="x", message_id="b"), exchange="", routing_key=other)
        async with delivery(down, other) as unsettled:
            assert not unsettled.redelivered
        async with delivery(down, other) as redelivered:
            assert redelivered.redelivered
            await down.dead_letter(redelivered, other, "not_json")
        assert await depths(broker, other, t.dead_letter_queue(other)) == [1, 0]
    finally:
        await down.close()
        await nowhere.aclose()


async def test_census_counts_distinct_messages(broker: Broker) -> None:
    t = broker.topology
    dead = t.dead_letter_queue(t.replies_queue)
    for message_id in ("a", "a", "b"):
        wire = Wire(b"{}", kind="x", message_id=message_id)
        await broker.publish(wire, exchange=t.dead_letter_exchange, routing_key=dead)
    assert await deadletters.census(broker, dead) == (3, 2)
    assert await broker.queue_depth(dead) == 3, "counting removes nothing"
