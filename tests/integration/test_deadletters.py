"""Dead letters can be inspected without losing them, and replayed to their source queue."""

from __future__ import annotations

import pytest

from baton import deadletters
from contracts import envelope as env
from contracts.payments import StartTransaction
from messaging.amqp import Broker
from messaging.codec import Wire
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
