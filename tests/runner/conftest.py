"""One runner suite, two worlds: the in-memory stub broker with the Redis store on fakeredis,
and the real RabbitMQ and Redis (isolated by namespace, cleaned up as the integration suite
does). Tests see only the ``Transport`` port, so the same test and the same scripted
participants run unchanged on both; ``latency`` switches the runner's four latency
mechanisms on or off (off: the same behaviour, only slower).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from contracts.base import Contract, Start
from contracts.envelope import Envelope
from contracts.topology import Topology
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import Wire, decode, encode
from messaging.transport.port import Delivery, Transport
from messaging.transport.stub_broker import StubBroker
from messaging.trust.signing import ORCHESTRATOR, Keyring, KeySet
from orchestrator.core.catalog import Catalog, saga_id_for
from orchestrator.core.state import SagaState
from orchestrator.runtime.chaos import CrashPoints
from orchestrator.runtime.redis_store import RedisSagaStore
from orchestrator.runtime.runner import Orchestrator, RunnerConfig
from participants.payments.contracts import payment_contracts
from tests.conftest import PARTICIPANTS, delete_keys
from tests.integration.harness import fast_payment
from tests.support.sagas import catalog as catalog_of

T = TypeVar("T")
TYPED = payment_contracts()
WAIT_S = 10.0  # the longest any condition is waited for


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``WAIT_S``."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                if result := await check():
                    return result
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT_S} s: {what}") from None


@dataclass
class Received:
    envelope: Envelope
    body: Contract


class Participant:
    """A participant the test scripts by hand, over the ``Transport`` port only: it takes
    commands the orchestrator signed and signs its replies as ``name``."""

    def __init__(self, transport: Transport, name: str, keys: KeySet) -> None:
        self.transport = transport
        self.name = name
        self.keyring = keys.keyring(name)
        self.inbox: asyncio.Queue[Received] = asyncio.Queue()
        # Another copy of a command already taken (same message id): the outbox sweeper
        # re-sends an entry whose done mark it did not see in time, as a loaded machine may
        # make it do in any test. A real participant's inbox answers it from memory; this
        # one counts it and keeps the script to one delivery per command.
        self.seen: set[str] = set()
        self.copies = 0

    async def start(self) -> Participant:
        async def on_command(message: Delivery) -> None:
            await message.ack()
            wire = wire_of(message)
            self.keyring.verify_from(wire, (ORCHESTRATOR,), "commands")
            envelope, body = decode(wire, TYPED)
            if wire.message_id in self.seen:
                self.copies += 1
                return
            self.seen.add(wire.message_id)
            await self.inbox.put(Received(envelope, body))

        await self.transport.consume(self.transport.topology.command_queue(self.name), on_command)
        return self

    async def next(self) -> Received:
        return await asyncio.wait_for(self.inbox.get(), WAIT_S)

    def reply_wire(self, to: Received, body: Contract, attempt: int | None = None) -> Wire:
        envelope = to.envelope.reply(body.KIND)
        if attempt is not None:
            envelope = envelope.model_copy(update={"attempt": attempt})
        return encode(envelope, body)

    async def send(self, wire: Wire) -> None:
        """Sign ``wire`` as this participant and publish it to the replies."""
        t = self.transport.topology
        await self.transport.publish(
            self.keyring.sign(wire), exchange=t.replies_exchange, routing_key=t.replies_queue
        )

    async def reply(self, to: Received, body: Contract, *, attempt: int | None = None) -> None:
        await self.send(self.reply_wire(to, body, attempt))


@dataclass
class Baton:
    """A running orchestrator replica and what a test needs to drive and observe it."""

    transport: Transport
    store: RedisSagaStore
    orchestrator: Orchestrator
    upstream: Keyring
    dead: asyncio.Queue[Wire] = field(default_factory=asyncio.Queue)  # replies dead-lettered

    async def start(self, body: Start) -> str:
        envelope = Envelope(kind=body.KIND, saga_id="-")
        t = self.transport.topology
        wire = self.upstream.sign(encode(envelope, body))
        await self.transport.publish(wire, exchange="", routing_key=t.start_queue)
        return saga_id_for("payment", body.idempotency_key)

    async def state(self, saga_id: str) -> SagaState:
        state = await self.store.load(saga_id)
        assert state is not None, f"saga {saga_id} is not in the store"
        return state

    async def finished(self, saga_id: str) -> SagaState:
        async def done() -> SagaState | None:
            state = await self.store.load(saga_id)
            return state if state is not None and state.status.is_finished else None

        return await eventually(done, f"saga {saga_id} finished")

    def ignored(self) -> float:
        """Replies and ticks the engine ignored, whatever the reason."""
        return sum(
            s.value
            for metric in self.orchestrator.metrics.ignored.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        )


@dataclass
class World:
    """One broker and one Redis, stub or real, for one test."""

    name: str
    transport: Transport
    redis: aioredis.Redis
    namespace: str
    keys: KeySet
    latency: bool = True
    participants: dict[str, Participant] = field(default_factory=dict)

    async def participant(self, name: str) -> Participant:
        if name not in self.participants:
            self.participants[name] = await Participant(self.transport, name, self.keys).start()
        return self.participants[name]

    @asynccontextmanager
    async def running(
        self, catalog: Catalog | None = None, *, crash: CrashPoints | None = None
    ) -> AsyncIterator[Baton]:
        """An orchestrator replica on this world until the block ends."""
        store = RedisSagaStore(
            self.redis, namespace=self.namespace, shards=4, retention_s=3600,
            batch_scripts=self.latency,
        )  # fmt: skip
        config = RunnerConfig(
            tick_interval_s=0.02, outbox_grace_s=0.5, cache_states=self.latency,
            wake_times=self.latency, batch_marks=self.latency,
        )  # fmt: skip
        keyring = self.keys.keyring(ORCHESTRATOR, upstreams=("cli",))
        orchestrator = Orchestrator(
            catalog or catalog_of(fast_payment(timeout_s=5.0)), store, self.transport,
            keyring=keyring, config=config, crash=crash,
        )  # fmt: skip
        baton = Baton(self.transport, store, orchestrator, self.keys.keyring("cli"))

        async def on_dead(message: Delivery) -> None:
            await message.ack()
            await baton.dead.put(wire_of(message))

        dead_queue = self.transport.topology.dead_letter_queue(
            self.transport.topology.replies_queue
        )
        await self.transport.consume(dead_queue, on_dead)
        stop = asyncio.Event()
        task = asyncio.create_task(orchestrator.run(stop))
        try:
            yield baton
        finally:
            stop.set()
            await task


@asynccontextmanager
async def stub_world(
    namespace: str, keys: KeySet
) -> AsyncIterator[tuple[Transport, aioredis.Redis]]:
    broker = StubBroker(Topology(namespace=namespace))
    await broker.declare(PARTICIPANTS)
    redis = FakeRedis(server=FakeServer())
    try:
        yield broker, redis
    finally:
        await broker.close()
        await redis.aclose()


@asynccontextmanager
async def real_world(
    namespace: str, rabbit_url: str, redis_url: str
) -> AsyncIterator[tuple[Transport, aioredis.Redis]]:
    """As the ``broker`` and ``redis_client`` fixtures of ``tests/conftest.py``: this test's
    namespace only, its queues, exchanges and keys deleted afterwards."""
    topology = Topology(namespace=namespace)
    broker = await Broker.connect(rabbit_url, topology, prefetch=32)
    await broker.declare(PARTICIPANTS)
    redis = aioredis.Redis.from_url(redis_url)
    await redis.ping()  # a missing service fails the test; it never skips
    try:
        yield broker, redis
    finally:
        await delete_keys(redis, namespace)
        await redis.aclose()
        await broker.delete(topology.all_queues(PARTICIPANTS), topology.exchanges)
        await broker.close()


@pytest.fixture(params=["stub", pytest.param("real", marks=pytest.mark.integration)])
def world_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["latency_on", "latency_off"])
def latency(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def world(
    world_name: str, latency: bool, namespace: str, rabbit_url: str, redis_url: str, keys: KeySet
) -> AsyncIterator[World]:
    opened = (
        stub_world(namespace, keys)
        if world_name == "stub"
        else real_world(namespace, rabbit_url, redis_url)
    )
    async with opened as (transport, redis):
        yield World(world_name, transport, redis, namespace, keys, latency)
