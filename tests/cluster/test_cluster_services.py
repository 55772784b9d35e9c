"""The cluster launchers do what the fault suite relies on: real clusters that survive a
node's death. The clusters are the suite's (conftest.py: RabbitMQ ~20 s to start, Redis ~3 s)."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import aio_pika
import pytest
from redis.cluster import ClusterNode, RedisCluster

from tests.support.clusters import RabbitCluster, RedisClusterServers
from tests.support.polling import wait_for


@pytest.mark.timeout(300)  # three nodes boot in the first test on a 2-core machine
def test_the_rabbit_nodes_form_one_cluster(rabbit_cluster: RabbitCluster) -> None:
    running = rabbit_cluster.cluster_status()["running_nodes"]
    assert isinstance(running, list)
    assert sorted(running) == sorted(node.name for node in rabbit_cluster.nodes)
    assert rabbit_cluster.running() == [0, 1, 2]
    assert rabbit_cluster.url.count("127.0.0.1:") == 3


async def _get_once(url: str, queue: str) -> bytes:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        found = await (await channel.get_queue(queue, ensure=False)).get(timeout=5)
        await found.ack()
        return found.body


async def _get(url: str, queue: str, timeout_s: float = 90.0) -> bytes:
    """One message from ``queue`` via the node at ``url``; retried while the queue elects
    a leader (a get then closes the whole connection with "nodedown", or times out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await _get_once(url, queue)
        except (TimeoutError, RuntimeError, aio_pika.exceptions.AMQPError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.timeout(300)
async def test_a_quorum_queue_outlives_its_leader(rabbit_cluster: RabbitCluster) -> None:
    queue = f"cluster-test-{uuid4().hex[:8]}"
    async with await aio_pika.connect(rabbit_cluster.urls[0]) as connection:
        channel = await connection.channel()  # publisher confirms: published = stored
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
    leader = rabbit_cluster.leader_of(queue)
    a, b = (i for i in range(3) if i != leader)
    async with await aio_pika.connect(rabbit_cluster.urls[a]) as connection:
        channel = await connection.channel()
        for body in (b"first", b"second"):
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=queue)
    assert await _get(rabbit_cluster.urls[b], queue) == b"first"  # published via a, read via b

    rabbit_cluster.kill(leader)
    assert await _get(rabbit_cluster.urls[b], queue) == b"second"
    wait_for(lambda: rabbit_cluster.leader_of(queue) != leader, "a new leader", 90)
    assert rabbit_cluster.leader_of(queue) in (a, b)

    rabbit_cluster.restart(leader)
    assert rabbit_cluster.running() == [0, 1, 2]


def test_the_redis_cluster_has_three_primaries_with_a_replica_each(
    redis_cluster: RedisClusterServers,
) -> None:
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3
    views = redis_cluster.nodes_seen_by(primaries[0])
    for primary in (v for v in views if v.port in primaries):
        assert [v.port for v in views if v.primary_id == primary.node_id] != []
        assert len([v for v in views if v.primary_id == primary.node_id]) == 1
    assert sum(hi - lo + 1 for v in views if v.port in primaries for lo, hi in v.slots) == 16384


def test_an_acknowledged_write_survives_its_primary(redis_cluster: RedisClusterServers) -> None:
    nodes = [ClusterNode(h, p) for h, p in redis_cluster.startup_nodes]  # type: ignore[no-untyped-call]
    client = RedisCluster(startup_nodes=nodes, decode_responses=True)
    try:
        key = f"cluster-test-{uuid4().hex[:8]}"
        client.set(key, "kept")
        slot: int = client.keyslot(key)  # type: ignore[no-untyped-call]
        primary = redis_cluster.primary_of_slot(slot)
        with redis_cluster.client(primary) as direct:
            assert direct.execute_command("WAIT", 1, 1000) == 1  # the replica has it too

        replacement = redis_cluster.kill_primary_and_wait_failover(primary)
        assert replacement != primary
        assert redis_cluster.primary_of_slot(slot) == replacement
        assert client.get(key) == "kept"

        redis_cluster.restart(primary)
        assert redis_cluster.role(primary) == "slave"
        assert primary not in redis_cluster.primaries()
        assert client.get(key) == "kept"
    finally:
        client.close()
