"""The process around one participant: any handlers factory, run in the SDK ``Worker``.

A participant is a handlers factory ``(redis, namespace) -> Handlers`` (what a package's
``participants:`` entry names). ``run_worker`` is everything else a participant process
needs, the same for every saga: the sealing key and signing key checked before connecting,
Redis and RabbitMQ connected, the topology waited for (``baton declare`` creates it: a
participant's broker user may not), metrics, health endpoints, and a graceful stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis

from baton_sdk.handlers import Handlers
from baton_sdk.metrics import PrometheusWorkerMetrics
from baton_sdk.worker import Worker
from messaging.observability.health import (
    broker_ready,
    consumer_alive,
    consumers_ready,
    redis_ready,
    serving,
)
from messaging.redis_client import redis_for
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.transport.dead_marks import RedisDeadLetterMarks
from messaging.transport.poison import FailureCounts
from messaging.trust.sealing import Sealer
from messaging.trust.signing import ORCHESTRATOR, Keyring

HandlersFactory = Callable[[Redis, str], Handlers]


def participant_keyring(name: str, settings: Settings) -> Keyring:
    """The participant's signing key (signer ``name`` unless configured) and the
    orchestrator's public keys: SigningKeyError, naming the variable, without either."""
    keyring = Keyring.from_settings(settings.signing, role=name)
    keyring.require_trust([ORCHESTRATOR])
    return keyring


def build_handlers(name: str, factory: HandlersFactory, redis: Redis, namespace: str) -> Handlers:
    """Call the factory; TypeError when it does not make ``Handlers`` (a wrong ``--app``)."""
    handlers = factory(redis, namespace)
    if not isinstance(handlers, Handlers):
        raise TypeError(
            f"the factory of participant {name} returned {type(handlers).__name__}, not Handlers"
        )
    return handlers


async def _await_topology(broker: Broker, name: str, stop: asyncio.Event) -> bool:
    """Wait until this participant's queues exist (checked passively); False if stopped first."""
    queues, exchanges = broker.topology.participant_needs(name)
    return await broker.wait_for(queues, exchanges, stop)


async def _connect(settings: Settings, redis: Redis, sealer: Sealer) -> Broker:
    return await Broker.connect(
        str(settings.rabbit.url), settings.topology,
        prefetch=settings.rabbit.prefetch, queue_type=settings.rabbit.queue_type,
        delivery_limit=settings.rabbit.delivery_limit,
        wait_s=settings.rabbit.connect_wait_s,
        dead_marks=RedisDeadLetterMarks(redis, settings.namespace), sealer=sealer,
    )  # fmt: skip


async def _work(
    name: str, handlers: Handlers, broker: Broker, redis: Redis, settings: Settings,
    keyring: Keyring, stop: asyncio.Event,
) -> None:  # fmt: skip
    metrics = PrometheusWorkerMetrics()
    metrics.register(name, list(handlers))
    worker = Worker(
        name, handlers, broker, redis, settings.namespace, settings.participant,
        keyring=keyring, metrics=metrics,
    )  # fmt: skip
    worker.failures = FailureCounts(settings.rabbit.poison_after)
    checks = {
        "rabbitmq": broker_ready(broker),
        "redis": redis_ready(redis),
        "consumers": consumers_ready(broker),  # not while its queue is deleted under it
    }
    alive = {"consumers": consumer_alive(broker, worker.failures)}
    async with serving(metrics.registry, checks, settings.metrics.port,
                       settings.metrics.host, liveness=alive):  # fmt: skip
        await worker.run(stop)


async def run_worker(
    name: str,
    factory: HandlersFactory,
    settings: Settings,
    stop: asyncio.Event,
    *,
    keyring: Keyring | None = None,
) -> None:
    """Run participant ``name`` with the handlers ``factory`` makes, until ``stop`` is set.

    Refuses before connecting when there is no sealing key or signing key, or when the
    factory does not make ``Handlers``. ``keyring`` defaults to the configured one.
    """
    sealer = Sealer.from_settings(settings.sealing)  # no key: refuse before connecting
    keyring = keyring or participant_keyring(name, settings)  # likewise
    redis = redis_for(settings.redis)  # connects on first use
    try:
        handlers = build_handlers(name, factory, redis, settings.namespace)
        broker = await _connect(settings, redis, sealer)
        try:
            if await _await_topology(broker, name, stop):
                await _work(name, handlers, broker, redis, settings, keyring, stop)
        finally:
            await broker.close()
    finally:
        await redis.aclose()
