"""Past one machine (issue 12): the payment saga on a three-node RabbitMQ cluster with quorum
queues and a Redis Cluster of three primaries with a replica each, through node faults.

The checks are the fault suite's (``Result.ok``): nothing lost or unfinished, the books
balanced, nothing captured twice, the dead-letter queues holding exactly what was injected.
Every process runs with the clustered settings: all nodes in both URLs, quorum queues with
a delivery limit, and durable writes (WAIT for one replica before a message is acked).
In ``make test`` one node of each kind fails once; ``make faults-cluster``
(BATON_FAULTS_LONG=1) runs thousands of sagas through over a hundred node faults.
"""

from __future__ import annotations

import json

import pytest

from tests.fault import faults as f
from tests.fault.cluster_faults import (
    cut_rabbit_node,
    each_once,
    fail_over_redis_primary,
    kill_rabbit_node,
    node_faults,
    rolling_restart,
)
from tests.fault.conftest import RESULTS
from tests.fault.harness import DELIVERY_LIMIT, LONG, FaultRun, Result, Scenario
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.redis_cluster import RedisClusterServers

pytestmark = [pytest.mark.fault, pytest.mark.timeout(3600 if LONG else 400)]

CLUSTER_ENV = {
    "BATON_RABBIT__QUEUE_TYPE": "quorum",
    "BATON_RABBIT__DELIVERY_LIMIT": str(DELIVERY_LIMIT),
    "BATON_REDIS__DURABLE_REPLICAS": "1",
    "BATON_REDIS__DURABLE_TIMEOUT_MS": "1000",
}
NODE_FAULTS = ("rabbit_node_kill", "rabbit_node_cut", "rabbit_node_rolling_restart",
               "redis_primary_failover")  # fmt: skip


async def run(scenario: Scenario, rabbit: RabbitCluster, redis: RedisClusterServers) -> Result:
    result = await FaultRun(scenario, rabbit, redis).run()
    result.rabbit_nodes = len(rabbit.nodes)
    result.redis_primaries = len(redis.primaries())
    RESULTS.append(result)
    print(json.dumps(result.__dict__, default=str))
    assert result.ok, result
    return result


def cluster_scenario(name: str, sagas: int, **options: object) -> Scenario:
    return Scenario(
        name,
        sagas,
        env=CLUSTER_ENV,
        queue_type="quorum",
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.skipif(LONG, reason="make faults-cluster runs the long scenario instead")
async def test_a_rabbit_node_and_a_redis_primary_fail_once(
    rabbit_cluster: RabbitCluster, redis_cluster: RedisClusterServers
) -> None:
    """The small variant: a Redis primary failed over to its replica and back, then the
    replies queue's leader killed and back, with payments in flight throughout."""
    scenario = cluster_scenario(
        "cluster_small", 150, rate_per_s=4, in_flight=30,
        faults=[each_once(fail_over_redis_primary, kill_rabbit_node)],
    )  # fmt: skip
    result = await run(scenario, rabbit_cluster, redis_cluster)
    faults, notes = result.faults_injected, result.fault_notes
    assert faults["redis_primary_failover"] == notes["redis_primary_failover_under_load"] == 1
    assert faults["rabbit_node_kill"] == notes["rabbit_node_kill_under_load"] == 1, notes
    assert notes["rabbit_node_kill_leader"] == 1, notes
    assert result.unexpected_outcomes == 0, result


@pytest.mark.skipif(not LONG, reason="the long run: make faults-cluster")
async def test_thousands_of_sagas_through_a_hundred_node_faults(
    rabbit_cluster: RabbitCluster, redis_cluster: RedisClusterServers
) -> None:
    """Node kills (the quorum leader every other time), a node cut off from its clients,
    Redis primary failovers and rolling restarts, beside the single-node suite's process
    kills and malformed messages."""
    mix = [(kill_rabbit_node, 5), (cut_rabbit_node, 2), (fail_over_redis_primary, 4),
           (rolling_restart, 1)]  # fmt: skip
    scenario = cluster_scenario(
        "cluster_long", 4000, replicas=3, rate_per_s=3.0, in_flight=60, finish_within_s=900,
        faults=[
            node_faults(105, mix),
            f.every(10.0, f.kill_orchestrator),
            f.every(10.0, f.kill_participant),
            f.every(3.0, f.unknown_saga_reply),
            f.once(5.0, f.inject_malformed),
        ],
    )  # fmt: skip
    result = await run(scenario, rabbit_cluster, redis_cluster)
    faults, notes = result.faults_injected, result.fault_notes
    assert sum(faults.get(kind, 0) for kind in NODE_FAULTS) >= 100, faults
    assert sum(notes.get(f"{kind}_under_load", 0) for kind in NODE_FAULTS) >= 100, notes
    assert faults["rabbit_node_kill"] >= 10, faults
    assert faults["redis_primary_failover"] >= 5, faults
    assert result.sagas >= 2000, result
