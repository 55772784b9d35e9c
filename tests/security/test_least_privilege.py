"""Each service's broker and Redis user can do its job and nothing else (design §12).

On a private RabbitMQ node and redis-server, with the users created as deployed (the
rendered definitions file, the ACL rules of ``baton.access``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage
from redis.exceptions import NoPermissionError

from baton import operate
from baton_sdk.keys import InboxKeys
from contracts.envelope import Envelope
from messaging.transport.amqp import Broker
from messaging.transport.codec import Wire
from messaging.trust.signing import ORCHESTRATOR, KeySet
from orchestrator.runtime.definition_registry import DefinitionRegistry
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.redis_store import RedisSagaStore
from orchestrator.runtime.runner import Orchestrator, RunnerConfig
from participants.payments import run_participant, seed_demo_world
from tests.conftest import PARTICIPANTS
from tests.integration.harness import eventually
from tests.security.conftest import Deployment, baton, depth
from tests.support.sagas import catalog as catalog_of

pytestmark = pytest.mark.integration

REFUSED = aiormq.exceptions.ChannelAccessRefused


def a_wire(kind: str = "test.probe.v1") -> Wire:
    return Wire(body=b"{}", kind=kind, message_id="m-1", correlation_id="s-1")


async def connect(url: str, d: Deployment) -> Broker:
    return await Broker.connect(url, d.topology)


async def refused(url: str, d: Deployment, action: Callable[[Broker], Awaitable[Any]]) -> str:
    """Run ``action`` on a fresh connection; it must be refused (ACCESS_REFUSED)."""
    broker = await connect(url, d)
    try:
        with pytest.raises(REFUSED) as refusal:
            async with asyncio.timeout(10):
                await action(broker)
        return str(refusal.value)
    finally:
        await broker.close()


async def ack(message: AbstractIncomingMessage) -> None:
    await message.ack()


async def test_a_participant_user_consumes_its_own_queue_and_publishes_replies_only(
    deployment: Deployment,
) -> None:
    d, t = deployment, deployment.topology
    url = d.amqp_url("payment")
    broker = await connect(url, d)
    try:
        stop = asyncio.Event()
        assert await broker.wait_for(*t.participant_needs("payment"), stop)  # passive: allowed
        got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def on_command(message: AbstractIncomingMessage) -> None:
            await message.ack()
            await got.put(message)

        await broker.consume(t.command_queue("payment"), on_command)
        await broker.publish(a_wire(), exchange=t.replies_exchange, routing_key=t.replies_queue)
        dead = t.dead_letter_queue(t.command_queue("payment"))
        await broker.publish(a_wire(), exchange=t.dead_letter_exchange, routing_key=dead)
    finally:
        await broker.close()
    assert await depth(d, t.replies_queue) == 1
    assert await depth(d, dead) == 1

    # ... and nothing else: another participant's queue, starts, commands, events, declaring
    other = t.command_queue("risk")
    reason = await refused(url, d, lambda b: b.consume(other, on_command))
    assert f"access to queue '{other}'" in reason
    await refused(url, d, lambda b: b.publish(a_wire(), exchange=t.start_exchange,
                                              routing_key=t.start_queue))  # fmt: skip
    await refused(url, d, lambda b: b.publish(a_wire(), exchange="", routing_key=t.start_queue))
    await refused(url, d, lambda b: b.publish(a_wire(), exchange=t.commands_exchange,
                                              routing_key="risk"))  # fmt: skip
    await refused(url, d, lambda b: b.publish(a_wire(), exchange=t.events_exchange,
                                              routing_key="saga.payment.completed"))  # fmt: skip
    await refused(url, d, lambda b: b.declare(PARTICIPANTS))
    assert await depth(d, t.start_queue) == 0
    assert await depth(d, other) == 0


async def test_a_caller_user_publishes_starts_and_reads_its_own_reply_queue_only(
    deployment: Deployment,
) -> None:
    d, t = deployment, deployment.topology
    url = d.amqp_url("caller")
    broker = await connect(url, d)
    try:
        channel = await broker.connection.channel()
        reply_queue = await channel.declare_queue(f"{t.reply_prefix}mine", exclusive=True)
        await broker.publish(a_wire(), exchange=t.start_exchange, routing_key=t.start_queue)
        await reply_queue.consume(ack)
        await channel.close()
    finally:
        await broker.close()
    assert await depth(d, t.start_queue) == 1

    await refused(url, d, lambda b: b.consume(t.start_queue, ack))
    await refused(url, d, lambda b: b.publish(a_wire(), exchange="",
                                              routing_key=t.command_queue("payment")))  # fmt: skip
    await refused(url, d, lambda b: b.publish(a_wire(), exchange=t.commands_exchange,
                                              routing_key="payment"))  # fmt: skip


async def test_only_the_admin_user_declares_and_the_services_wait_for_it(
    deployment: Deployment, namespace: str
) -> None:
    """A fresh namespace with no topology: the orchestrator's user may not create it."""
    d = deployment
    t = d.topology.model_copy(update={"namespace": namespace + "fresh."})
    orchestrator = await Broker.connect(d.amqp_url("orchestrator"), t)
    try:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        assert not await orchestrator.wait_for(*t.orchestrator_needs(PARTICIPANTS), stop,
                                               retry_s=0.2)  # fmt: skip
    finally:
        await orchestrator.close()
    with pytest.raises(REFUSED):
        await (await Broker.connect(d.amqp_url("orchestrator"), t)).declare(PARTICIPANTS)


async def test_a_saga_completes_with_every_service_on_its_own_users(
    deployment: Deployment, keys: KeySet
) -> None:
    """The orchestrator, the four participants and the caller each on their own broker
    and Redis user: the whole payment saga runs, and the caller gets its answer."""
    d, t, ns = deployment, deployment.topology, deployment.topology.namespace
    admin_redis = aioredis.Redis.from_url(d.redis_url("admin"))
    world = await seed_demo_world(admin_redis, ns, accounts=2, balance_minor=10**6)
    await admin_redis.aclose()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_participant(name, d.settings(name, keys), stop))
        for name in PARTICIPANTS
    ]
    orchestrator_redis = aioredis.Redis.from_url(d.redis_url("orchestrator"))
    broker = await Broker.connect(d.amqp_url("orchestrator"), t)
    store = RedisSagaStore(orchestrator_redis, namespace=ns, shards=4, retention_s=3600)
    registry = DefinitionRegistry(orchestrator_redis, KeySpace(ns, 4))  # registered as its user
    replica = Orchestrator(
        catalog_of(), store, broker,
        keyring=keys.keyring(ORCHESTRATOR), config=RunnerConfig(tick_interval_s=0.02),
        definitions=registry,
    )  # fmt: skip
    running = asyncio.create_task(replica.run(stop))
    caller = await Broker.connect(d.amqp_url("caller"), t)
    try:
        body = world.transaction(1)
        envelope = Envelope(kind=body.KIND, saga_id="-", sent_at=int(time.time()))
        event = await operate.start_and_wait(caller, envelope, body, 30, keys.keyring("cli"))
        assert event["event"] == "completed", event
        assert [r.key for r in await registry.all()] == [("payment", 1)]
    finally:
        stop.set()
        await asyncio.gather(running, *tasks)
        await caller.close()
        await broker.close()
        await orchestrator_redis.aclose()


async def test_a_participant_redis_user_cannot_touch_the_orchestrators_keys(
    deployment: Deployment,
) -> None:
    d, ns = deployment, deployment.topology.namespace
    saga_key = KeySpace(ns, 4).saga("s-1")
    inbox_key = InboxKeys(ns, "payment").outcome("e-1")
    orchestrator = aioredis.Redis.from_url(d.redis_url("orchestrator"))
    payment = aioredis.Redis.from_url(d.redis_url("payment"))
    risk = aioredis.Redis.from_url(d.redis_url("risk"))
    try:
        await orchestrator.hset(saga_key, mapping={"state": "{}"})
        await payment.set(inbox_key, "outcome")
        with pytest.raises(NoPermissionError):
            await payment.hgetall(saga_key)  # the orchestrator's saga state
        with pytest.raises(NoPermissionError):
            await orchestrator.get(inbox_key)  # a participant's inbox
        with pytest.raises(NoPermissionError):
            await risk.get(inbox_key)  # another participant's inbox
        with pytest.raises(NoPermissionError):
            await payment.keys("*")  # no listing of keys, no FLUSHALL, no CONFIG
        with pytest.raises(NoPermissionError):
            await payment.flushall()
        assert await payment.get(inbox_key) == b"outcome"
    finally:
        for client in (orchestrator, payment, risk):
            await client.aclose()


async def test_declare_sets_the_queue_limits_and_a_full_start_queue_refuses_the_publisher(
    deployment: Deployment,
) -> None:
    """`baton declare --policies` as the admin user, through the management API; a start
    beyond the start queue's max-length is nacked (reject-publish): the caller knows."""
    d, t = deployment, deployment.topology
    env = {"BATON_NAMESPACE": t.namespace, "BATON_RABBIT__URL": d.admin_url,
           "BATON_REDIS__URL": d.redis_url("admin")}  # fmt: skip
    management = f"http://127.0.0.1:{d.broker.node.management_port}/"
    code, out, err = await baton(env, "declare", "--policies", "--start-max-length", "3",
                                 "--management-url", management)  # fmt: skip
    assert code == 0, err
    assert f"{t.namespace}baton-start" in out
    assert d.passwords[d.user("admin")] not in out + err

    async def limit_applied() -> bool:
        queue = await asyncio.to_thread(d.broker.management, "GET", f"queues/%2F/{t.start_queue}")
        return bool((queue.get("effective_policy_definition") or {}).get("max-length") == 3)

    await eventually(limit_applied, what="the start queue's policy")
    caller = await connect(d.amqp_url("caller"), d)
    try:
        for _ in range(3):
            await caller.publish(a_wire(), exchange=t.start_exchange, routing_key=t.start_queue)
        with pytest.raises(aiormq.exceptions.DeliveryError):
            await caller.publish(a_wire(), exchange=t.start_exchange, routing_key=t.start_queue)
    finally:
        await caller.close()
    assert await depth(d, t.start_queue) == 3
    dead = await asyncio.to_thread(
        d.broker.management, "GET", f"queues/%2F/{t.dead_letter_queue(t.start_queue)}"
    )
    assert dead["effective_policy_definition"]["overflow"] == "reject-publish"


async def test_the_broker_refuses_a_message_over_its_size_limit(deployment: Deployment) -> None:
    """max_message_size (512 KiB): refused at the broker, before any consumer holds it."""
    d, t = deployment, deployment.topology
    admin = await connect(d.admin_url, d)
    try:
        fits = Wire(body=b"x" * (300 * 1024), kind="test.probe.v1")
        await admin.publish(fits, exchange=t.start_exchange, routing_key=t.start_queue)
        too_big = Wire(body=b"x" * (600 * 1024), kind="test.probe.v1")
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="max size"):
            await admin.publish(too_big, exchange=t.start_exchange, routing_key=t.start_queue)
    finally:
        await admin.close()
    assert await depth(d, t.start_queue) == 1
