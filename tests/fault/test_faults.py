"""Crash safety (issue 3): each fault kind on its own, then all of them mixed.

Every scenario runs real processes (2-3 orchestrator replicas, four participants) on the
suite's own RabbitMQ node and Redis server and ends with the same checks (``Result.ok``):
no saga lost or unfinished, none failed, the books balanced, nothing captured twice, and
the dead-letter queues holding exactly the malformed messages injected. ``BATON_FAULTS_LONG=1``
makes every scenario bigger (``make faults``).
"""

from __future__ import annotations

import json
from typing import TypeVar

import pytest

from tests.fault import faults as f
from tests.fault.conftest import RESULTS
from tests.fault.harness import LONG, PARTICIPANTS, FaultRun, Result, Scenario
from tests.fault.services import RabbitNode, RedisServer

pytestmark = [pytest.mark.fault, pytest.mark.timeout(1800 if LONG else 300)]

N = TypeVar("N", int, float)
CAPTURE = "payments.capture_transaction.v1"
CRASH_POINTS = '["after_commit","after_publish","compensating"]'


def size(small: N, long: N) -> N:
    return long if LONG else small


async def run(scenario: Scenario, rabbit: RabbitNode, redis: RedisServer) -> Result:
    result = await FaultRun(scenario, rabbit, redis).run()
    RESULTS.append(result)
    print(json.dumps(result.__dict__, default=str))
    assert result.ok, result
    if scenario.expect_outcomes:
        assert result.unexpected_outcomes == 0, result
    return result


async def test_orchestrator_replicas_killed(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """kill -9 of a replica at random moments; the others and its restart finish its work."""
    result = await run(
        Scenario("orchestrator_kill", size(200, 600), replicas=3, rate_per_s=20,
                 faults=[f.every(1.0, f.kill_orchestrator)]),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["orchestrator_kill"] >= 2


async def test_orchestrator_crash_points(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """Exits between commit and publish, publish and ack, and during compensation."""
    env = {"BATON_CHAOS__CRASH_POINTS": CRASH_POINTS, "BATON_CHAOS__CRASH_RATE": "0.006"}
    result = await run(
        Scenario("orchestrator_crash_points", size(200, 600), replicas=3, fail_share=0.4,
                 rate_per_s=20, orchestrator_env=env),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert sum(v for k, v in result.faults_injected.items() if "crash_" in k) >= 2


async def test_participants_killed(rabbit_node: RabbitNode, redis_server: RedisServer) -> None:
    """kill -9 of each participant mid-handling, and hard exits right after the handler ran."""
    crash = {"BATON_PARTICIPANT__CRASH_RATE": "0.01"}
    result = await run(
        Scenario("participant_kill", size(200, 600), rate_per_s=20,
                 faults=[f.every(1.0, f.kill_participant)],
                 participant_env=dict.fromkeys(PARTICIPANTS, crash)),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["participant_kill"] >= 2
    assert result.faults_injected.get("participant_crash", 0) >= 1


async def test_rabbit_connections_closed_and_node_restarted(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """Every connection force-closed, then the node stopped and started again."""
    result = await run(
        Scenario("rabbit", size(150, 600), rate_per_s=12,
                 faults=[f.every(3.0, f.close_connections, limit=size(2, 6)),
                         f.every(8.0, f.restart_rabbit, limit=size(1, 3), first_s=4.0)]),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["rabbit_restart"] >= 1
    assert result.faults_injected["rabbit_connections_closed"] >= 1


async def test_redis_restarted(rabbit_node: RabbitNode, redis_server: RedisServer) -> None:
    """redis-server killed and restarted from its fsync-always AOF."""
    result = await run(
        Scenario("redis", size(200, 600), rate_per_s=15, faults=[f.every(3.0, f.restart_redis)]),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["redis_restart"] >= 2


async def test_participant_down_then_back(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """A participant down for a stretch shorter than its step's retry budget: sagas wait, finish."""
    result = await run(
        Scenario("participant_down_waits", size(150, 400), rate_per_s=15,
                 faults=[f.outage("pci", after_s=2.0, down_s=8.0)]),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["participant_outage"] == 1


async def test_participant_down_past_saga_deadline(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """Down past the saga deadline: the waiting sagas are compensated (reason saga_deadline)."""
    result = await run(
        Scenario("participant_down_deadline", size(150, 400), deadline_s=5.0, attempts=1000,
                 rate_per_s=15,
                 expect_outcomes=False, faults=[f.outage("risk", after_s=2.0, down_s=10.0)]),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["participant_outage"] == 1
    assert result.reasons.get("saga_deadline", 0) >= 1, result.reasons


async def test_replies_duplicated_reordered_delayed_dropped_and_stale(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """Reply chaos in every participant plus stale-attempt refusals for live sagas."""
    chaos = {"BATON_PARTICIPANT__REPLY_DROP_RATE": "0.03",
             "BATON_PARTICIPANT__REPLY_DUPLICATE_RATE": "0.1",
             "BATON_PARTICIPANT__REPLY_DELAY_MS": "300"}  # fmt: skip
    result = await run(
        Scenario("reply_chaos", size(200, 600), faults=[f.every(0.5, f.stale_replies)],
                 participant_env=dict.fromkeys(PARTICIPANTS, chaos)),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["reply_duplicated"] >= 1
    assert result.faults_injected["reply_dropped"] >= 1
    assert result.faults_injected["stale_reply"] >= 1
    assert result.faults_injected["handled_duplicate"] >= 1  # a dropped reply's retry answered


async def test_pivot_outcome_unknown(rabbit_node: RabbitNode, redis_server: RedisServer) -> None:
    """Every first capture reply is lost: the capture is retried, never compensated or doubled."""
    env = {"transaction": {"BATON_PARTICIPANT__DROP_FIRST_REPLY_OF": json.dumps([CAPTURE])}}
    result = await run(
        Scenario("pivot_outcome_unknown", size(120, 400), participant_env=env), rabbit_node,
        redis_server,
    )  # fmt: skip
    assert result.faults_injected["reply_first_reply_dropped"] >= result.completed
    assert result.faults_injected["handled_duplicate"] >= result.completed


async def test_malformed_input_and_unknown_sagas(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """Malformed messages on every queue, replies for unknown sagas: all dead-lettered, counted."""
    result = await run(
        Scenario("malformed", size(120, 400),
                 faults=[f.once(1.0, f.inject_malformed),
                         f.every(0.3, f.unknown_saga_reply, limit=10)]),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert len(result.dead_letters_expected) == 2 + len(PARTICIPANTS)
    assert result.faults_injected["unknown_saga_reply"] >= 1


async def test_everything_mixed(rabbit_node: RabbitNode, redis_server: RedisServer) -> None:
    """All the faults at once: the long run's main scenario (>= 2,000 sagas, >= 100 faults)."""
    chaos = {"BATON_PARTICIPANT__REPLY_DROP_RATE": "0.01",
             "BATON_PARTICIPANT__REPLY_DUPLICATE_RATE": "0.05",
             "BATON_PARTICIPANT__REPLY_DELAY_MS": "100",
             "BATON_PARTICIPANT__CRASH_RATE": "0.002"}  # fmt: skip
    crash = {"BATON_CHAOS__CRASH_POINTS": CRASH_POINTS, "BATON_CHAOS__CRASH_RATE": "0.0005"}
    scenario = Scenario(
        "mixed", size(200, 2000), replicas=3, in_flight=60, rate_per_s=15, expect_outcomes=False,
        orchestrator_env=crash, participant_env=dict.fromkeys(PARTICIPANTS, chaos),
        finish_within_s=600,
        faults=[
            f.every(size(4.0, 5.0), f.kill_orchestrator),
            f.every(size(4.0, 5.0), f.kill_participant),
            f.every(size(8.0, 15.0), f.close_connections),
            f.every(size(20.0, 40.0), f.restart_rabbit, first_s=6.0),
            f.every(size(10.0, 20.0), f.restart_redis, first_s=3.0),
            f.every(1.0, f.stale_replies),
            f.every(size(2.0, 3.0), f.unknown_saga_reply),
            f.once(2.0, f.inject_malformed),
        ],
    )  # fmt: skip
    result = await run(scenario, rabbit_node, redis_server)
    for kind in (
        "orchestrator_kill",
        "participant_kill",
        "rabbit_connections_closed",
        "rabbit_restart",
        "redis_restart",
        "stale_reply",
        "unknown_saga_reply",
    ):
        assert result.faults_injected.get(kind, 0) >= 1, (kind, result.faults_injected)


async def test_handlers_slower_than_their_timeout(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """A share of commands takes longer than the step timeout (2 s) in every participant.

    The orchestrator times out and retries under the same effect id while the first delivery
    still runs: the retry must wait for the lease (busy) and answer the stored outcome
    (duplicate), never run the handler a second time; a slow authorization must not strand
    its hold, a slow capture must not capture twice or be compensated.
    """
    slow = {"BATON_PARTICIPANT__SLOW_MS": "2600", "BATON_PARTICIPANT__SLOW_RATE": "0.12"}
    result = await run(
        Scenario("slow_handlers", size(120, 600), rate_per_s=15, fail_share=0.3,
                 participant_env=dict.fromkeys(PARTICIPANTS, slow)),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["handler_slowed"] >= 5
    # the slow deliveries' own retries met them: waited on the lease or answered from the inbox
    raced = result.faults_injected.get("handled_duplicate", 0)
    assert raced >= 1, result.faults_injected


async def test_small_balances_shared_by_sagas(
    rabbit_node: RabbitNode, redis_server: RedisServer
) -> None:
    """Few accounts, balances just above and below the amounts, many sagas per account.

    Holds race refusals (insufficient_funds) on the same account, while crafted failures
    void their holds and give the money back. A payment built to succeed may end
    compensated only for insufficient_funds; no account goes below zero, no hold is left.
    """
    chaos = {"BATON_PARTICIPANT__SLOW_MS": "300", "BATON_PARTICIPANT__SLOW_RATE": "0.2",
             "BATON_PARTICIPANT__REPLY_DUPLICATE_RATE": "0.05"}  # fmt: skip
    result = await run(
        Scenario("small_balances", size(150, 600), rate_per_s=20, fail_share=0.3,
                 accounts=size(25, 100), balance_minor=2_500,
                 amounts_minor=(999, 1_000, 1_249, 1_250, 1_251, 2_499, 2_500, 2_501),
                 allowed_refusals=frozenset({"insufficient_funds"}),
                 participant_env={"payment": chaos}),
        rabbit_node, redis_server,
    )  # fmt: skip
    assert result.faults_injected["refused_insufficient_funds"] >= 1, result.faults_injected
    assert result.faults_injected["handler_slowed"] >= 1
    assert result.completed >= 1
