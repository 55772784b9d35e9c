"""Bounds before work: expired starts refused, answers only to caller-owned reply queues,
services that wait for the topology instead of declaring it, /metrics on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from contracts.envelope import Envelope
from contracts.money import Money
from contracts.topology import Topology
from messaging.observability.health import serving
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.transport.codec import encode
from messaging.trust.signing import KeySet
from participants.payments import contracts as p
from participants.payments import run_participant
from tests.conftest import PARTICIPANTS
from tests.integration.harness import Baton, eventually, running_baton
from tests.support.rabbit_node import free_port

pytestmark = pytest.mark.integration


def a_payment(key: str) -> p.StartTransaction:
    return p.StartTransaction(
        idempotency_key=key, account_id="acct-1", merchant_id="m-1",
        amount=Money(minor=1250, currency="EUR"), card_token="tok_abcdef123456",
    )  # fmt: skip


@pytest.fixture
async def baton(
    broker: Broker, redis_client: aioredis.Redis, settings: Settings, keys: KeySet
) -> AsyncIterator[Baton]:
    async with running_baton(broker, redis_client, settings, keys=keys) as running:
        yield running


async def publish_start(baton: Baton, body: p.StartTransaction, **envelope: Any) -> None:
    wire = encode(Envelope(kind=body.KIND, saga_id="-", **envelope), body)
    t = baton.broker.topology
    await baton.broker.publish(
        baton.upstream.sign(wire), exchange=t.start_exchange, routing_key=t.start_queue
    )


async def answer(baton: Baton, event: str) -> dict[str, Any]:
    async def arrived() -> dict[str, Any] | None:
        return next((a for a in baton.answers if a["event"] == event), None)

    return await eventually(arrived, what=f"a {event} answer")


async def test_a_start_sent_longer_ago_than_its_ttl_is_rejected_and_dead_lettered(
    baton: Baton,
) -> None:
    """A burst queued for ten minutes was started anyway (the issue): now it is refused."""
    stale = int(time.time()) - 301  # BATON_ORCHESTRATOR__START_TTL_S defaults to 300
    await publish_start(baton, a_payment("stale"), sent_at=stale, reply_to=baton.reply_queue)
    rejected = await answer(baton, "rejected")
    assert (rejected["reason"], rejected["idempotency_key"]) == ("start_expired", "stale")
    t = baton.broker.topology

    async def dead_lettered() -> bool:
        return await baton.dead_letters(t.start_queue) == 1

    await eventually(dead_lettered, what="the expired start in the dead-letter queue")
    assert not await nonzero(baton), "an expired start starts nothing"

    baton.answers.clear()  # a fresh one starts
    await publish_start(baton, a_payment("fresh"), sent_at=int(time.time()),
                        reply_to=baton.reply_queue)  # fmt: skip

    async def started() -> bool:
        return bool(await nonzero(baton))

    await eventually(started, what="the fresh start")
    assert not baton.answers


async def test_a_reply_to_outside_the_callers_prefix_gets_no_answer(
    baton: Baton, broker: Broker
) -> None:
    """The orchestrator answers through the default exchange, which reaches every queue by
    name: a start must not aim it at a command queue (or anything not a caller's)."""
    t = broker.topology
    target = t.command_queue("risk")  # a queue that exists, and is not a reply queue
    await publish_start(baton, a_payment("aimed"), reply_to=target)
    await publish_start(baton, a_payment("aimed-bad"), reply_to=target, sent_at=0)

    async def both_handled() -> bool:
        rejected = await baton.dead_letters(t.start_queue) == 1
        return rejected and bool(await nonzero(baton))

    await eventually(both_handled, what="one saga started, one start rejected")
    ids = await baton.store.by_status(next(iter(await nonzero(baton))), 10)
    state = await baton.state(ids[0][0])
    assert state.reply_to == ""  # never answered there
    assert await broker.queue_depth(target) == 0


async def nonzero(baton: Baton) -> dict[Any, int]:
    return {status: n for status, n in (await baton.store.counts()).items() if n}


async def test_a_participant_waits_for_the_topology_instead_of_declaring_it(
    settings: Settings, broker: Broker, namespace: str
) -> None:
    """Its broker user may not configure: it checks passively and waits for `baton declare`."""
    fresh = settings.model_copy(update={"namespace": namespace + "later."})
    t = Topology(namespace=fresh.namespace)
    stop = asyncio.Event()
    admin = await Broker.connect(str(settings.rabbit.url), t)
    with capture_logs() as logs:
        task = asyncio.create_task(run_participant("payment", fresh, stop))
        try:
            said = await eventually(missing_said(logs), what="what is missing, said")
            assert f"queue {t.command_queue('payment')}" in said["missing"]
            assert "baton declare" in said["hint"]
            assert not task.done()  # waiting, not failing, and it declared nothing
            assert await admin.missing([t.command_queue("payment")])
            await admin.declare(PARTICIPANTS)

            async def consuming() -> bool:
                return await admin.consumer_count(t.command_queue("payment")) == 1

            await eventually(consuming, what="the participant to consume once declared")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await admin.delete(t.all_queues(PARTICIPANTS), t.exchanges)
            await admin.close()


def missing_said(
    logs: list[MutableMapping[str, Any]],
) -> Callable[[], Awaitable[MutableMapping[str, Any] | None]]:
    async def said() -> MutableMapping[str, Any] | None:
        return next((line for line in logs if line["event"] == "topology_missing"), None)

    return said


async def test_the_metrics_endpoint_listens_on_loopback_unless_told() -> None:
    assert Settings().metrics.host == "127.0.0.1"
    async with serving(CollectorRegistry(), {}, port=free_port()) as server:
        assert server is not None
        assert server.address == "127.0.0.1"
    async with serving(CollectorRegistry(), {}, free_port(), host="0.0.0.0") as server:
        assert server is not None
        assert server.address == "0.0.0.0"
