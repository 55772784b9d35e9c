"""Baton's own clients on the clusters: an AMQP connection moves to another node when its node
dies, and a Redis write is acknowledged only once a replica holds it."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio.cluster import RedisCluster

from contracts.topology import Topology
from messaging.durable_writes import Durability, NotDurable
from messaging.redis_client import redis_from_url
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire
from orchestrator.runtime.script_batch import ScriptBatch
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.redis_cluster import RedisClusterServers

pytestmark = pytest.mark.timeout(300)

WRITE = "redis.call('SET', KEYS[1], ARGV[1]) return 1"


async def _publish_until_confirmed(broker: Broker, queue: str, timeout_s: float = 60) -> None:
    """Publish one message, retrying while the connection fails over; raise if it never is."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            wire = Wire(body=b"{}", message_id=uuid4().hex)
            await broker.publish(wire, exchange="", routing_key=queue)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # the robust connection is moving to another node
        else:
            return


def _node_port(broker: Broker) -> int:
    """The port of the node the broker's connection is on now (aio-pika keeps its URL)."""
    connection: Any = broker.connection
    return int(connection.url.port)


async def test_a_connection_moves_to_another_node_when_its_node_dies(
    rabbit_cluster: RabbitCluster,
) -> None:
    topology = Topology(namespace=f"failover-{uuid4().hex[:8]}.")
    broker = await Broker.connect(rabbit_cluster.url, topology, queue_type="quorum")
    victim = next(
        i for i, node in enumerate(rabbit_cluster.nodes) if node.port == _node_port(broker)
    )
    try:
        await broker.declare(())
        await asyncio.to_thread(rabbit_cluster.kill, victim)
        # confirmed by the cluster while the node it was connected to is still down
        await _publish_until_confirmed(broker, topology.start_queue)
        assert _node_port(broker) != rabbit_cluster.nodes[victim].port
        assert victim not in await asyncio.to_thread(rabbit_cluster.running)
        assert await broker.queue_depth(topology.start_queue) == 1
    finally:
        await asyncio.to_thread(rabbit_cluster.restart, victim)
        await broker.delete(topology.all_queues(()), topology.exchanges)
        await broker.close()


def _replica_of(servers: RedisClusterServers, primary: int) -> int:
    views = servers.nodes_seen_by(primary)
    node_id = next(v.node_id for v in views if v.port == primary)
    return next(v.port for v in views if v.primary_id == node_id and "slave" in v.flags)


async def test_a_write_is_not_acknowledged_while_its_shard_has_no_replica(
    redis_cluster: RedisClusterServers,
) -> None:
    """WAIT makes the difference: the same script on a shard whose replica is dead answers
    NotDurable (its message would be redelivered), on a whole shard it answers."""
    client = redis_from_url(redis_cluster.url, Durability(replicas=1, timeout_ms=200))
    assert isinstance(client, RedisCluster)
    key = f"durable-{uuid4().hex}:{{s1}}:k"
    batch = ScriptBatch(client, {"write": WRITE})
    try:
        assert await batch.call("write", [key], ["1"]) == 1  # a replica acknowledged it
        sha = await client.script_load(WRITE)
        assert await client.evalsha(sha, 1, key, "2") == 1
        replica = _replica_of(redis_cluster, client.get_node_from_key(key).port)
        await asyncio.to_thread(redis_cluster.kill, replica)
        try:
            with pytest.raises(NotDurable):
                await batch.call("write", [key], ["3"])
            with pytest.raises(NotDurable):
                await client.evalsha(sha, 1, key, "4")
        finally:
            await asyncio.to_thread(redis_cluster.restart, replica)
        assert await batch.call("write", [key], ["5"]) == 1
    finally:
        await client.delete(key)
        await client.aclose()
