"""Node-level faults of the clusters: a RabbitMQ node killed or cut off, a Redis primary failed
over, a rolling restart. Each runs one at a time (``run.infra``) and leaves both clusters
whole again before the next: a node comes back before another goes.

``node_faults`` runs a mix of them a given number of times, whether or not the stream is
still publishing, so a long run reaches its count of node faults; the stream's pace is set
by the scenario so that sagas are in flight throughout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from tests.fault.harness import Fault, FaultRun
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.redis_cluster import RedisClusterServers

NodeFault = Callable[[FaultRun], Awaitable[None]]
DOWN_S = (1.0, 4.0)  # how long a killed or cut node stays away (uniform)


def _rabbit(run: FaultRun) -> RabbitCluster:
    assert isinstance(run.rabbit, RabbitCluster)
    return run.rabbit


def _redis(run: FaultRun) -> RedisClusterServers:
    assert isinstance(run.redis_server, RedisClusterServers)
    return run.redis_server


def _count(run: FaultRun, kind: str) -> None:
    """Count a fault, and whether sagas were in flight when it struck (``<kind>_under_load``):
    a node fault on an idle system proves little."""
    run.faults[kind] += 1
    run.fault_notes[f"{kind}_under_load"] += len(run.saga_ids) > run.finished_seen


async def _away(run: FaultRun) -> None:
    """The node stays away while sagas go on (the fault's length, not a settling pause)."""
    await asyncio.sleep(run.rng.uniform(*DOWN_S))


async def kill_rabbit_node(run: FaultRun) -> None:
    """kill -9 of one node, every other time the one leading the replies queue; it returns."""
    cluster = _rabbit(run)
    async with run.infra:
        run.outage_at = time.monotonic() + 60
        leader = await asyncio.to_thread(cluster.leader_of, run.topology.replies_queue)
        leader_turn = run.faults["rabbit_node_kill"] % 2 == 0
        victim = leader if leader_turn else run.rng.choice(
            [i for i in range(len(cluster.nodes)) if i != leader]
        )  # fmt: skip
        await asyncio.to_thread(cluster.kill, victim)
        _count(run, "rabbit_node_kill")
        run.fault_notes["rabbit_node_kill_leader"] += victim == leader
        await _away(run)
        await asyncio.to_thread(cluster.restart, victim)
        run.outage_at = time.monotonic()


async def cut_rabbit_node(run: FaultRun) -> None:
    """One node cut off from its clients (listener suspended, connections closed) while it
    stays in the cluster; the clients fail over to the others; then it is let back."""
    cluster = _rabbit(run)
    async with run.infra:
        run.outage_at = time.monotonic() + 60
        victim = run.rng.randrange(len(cluster.nodes))
        await asyncio.to_thread(cluster.stop_listener, victim)
        _count(run, "rabbit_node_cut")
        await _away(run)
        await asyncio.to_thread(cluster.resume_listener, victim)
        run.outage_at = time.monotonic()


async def rolling_restart(run: FaultRun) -> None:
    """Every RabbitMQ node killed and restarted in turn, the next only once it is back."""
    cluster = _rabbit(run)
    async with run.infra:
        run.outage_at = time.monotonic() + 300
        for i in range(len(cluster.nodes)):
            await asyncio.to_thread(cluster.kill, i)
            await asyncio.to_thread(cluster.restart, i)
            _count(run, "rabbit_node_rolling_restart")
        run.outage_at = time.monotonic()


async def fail_over_redis_primary(run: FaultRun) -> None:
    """kill -9 of a Redis primary; its replica takes over; the old one comes back as its
    replica (until then the shard's durable writes wait: no replica to acknowledge them)."""
    servers = _redis(run)
    async with run.infra:
        run.outage_at = time.monotonic() + 60
        victim = run.rng.choice(await asyncio.to_thread(servers.primaries))
        await asyncio.to_thread(servers.kill_primary_and_wait_failover, victim)
        _count(run, "redis_primary_failover")
        await _away(run)
        await asyncio.to_thread(servers.restart, victim)
        run.outage_at = time.monotonic()


def node_faults(count: int, mix: Sequence[tuple[NodeFault, int]], *, first_s: float = 2.0) -> Fault:
    """``count`` node faults drawn from ``mix`` (fault, weight), one after the other."""
    actions = [action for action, weight in mix for _ in range(weight)]

    async def fault(run: FaultRun) -> None:
        await asyncio.sleep(first_s)
        for _ in range(count):
            await run.rng.choice(actions)(run)

    return fault


def each_once(*actions: NodeFault, first_s: float = 2.0) -> Fault:
    """Every one of ``actions`` once, in order (the small variant in ``make test``)."""

    async def fault(run: FaultRun) -> None:
        await asyncio.sleep(first_s)
        for action in actions:
            await action(run)

    return fault
