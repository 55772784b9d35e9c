"""The four payment participants by name, and the process that runs one of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from redis.asyncio import Redis

from messaging.amqp import Broker
from messaging.dead_marks import RedisDeadLetterMarks
from messaging.health import broker_ready, consumer_alive, redis_ready, serving
from messaging.poison import FailureCounts
from messaging.sealing import Sealer
from messaging.settings import Settings
from messaging.signing import ORCHESTRATOR, Keyring
from participants.payments.authorization import authorization_handlers
from participants.payments.noop import NOOP_SERVICES
from participants.payments.pci import pci_handlers
from participants.payments.risk import risk_handlers
from participants.payments.transaction import transaction_handlers
from participants.sdk import Handlers, PrometheusWorkerMetrics, Worker

log = structlog.get_logger("baton.participant")

SERVICES: dict[str, Callable[[Redis, str], Handlers]] = {
    "payment": authorization_handlers,
    "risk": risk_handlers,
    "pci": pci_handlers,
    "transaction": transaction_handlers,
}


async def _await_topology(broker: Broker, name: str, stop: asyncio.Event) -> bool:
    """Wait until this participant's queues exist (checked passively; ``baton declare``
    creates them: a participant's broker user may not); False if stopped first."""
    queues, exchanges = broker.topology.participant_needs(name)
    return await broker.wait_for(queues, exchanges, stop)


def participant_keyring(name: str, settings: Settings) -> Keyring:
    """The participant's signing key (signer ``name`` unless configured) and the
    orchestrator's public keys: SigningKeyError, naming the variable, without either."""
    keyring = Keyring.from_settings(settings.signing, role=name)
    keyring.require_trust([ORCHESTRATOR])
    return keyring


async def run_participant(
    name: str,
    settings: Settings,
    stop: asyncio.Event,
    *,
    noop: bool = False,
    keyring: Keyring | None = None,
) -> None:
    """Connect, wait for this participant's queues, work until ``stop`` is set, close all.

    ``noop`` swaps the real service for one answering every command at once (``baton bench``).
    ``keyring`` defaults to the configured one (``participant_keyring``).
    """
    services = NOOP_SERVICES if noop else SERVICES
    if name not in services:
        raise ValueError(f"unknown participant {name!r}; known: {', '.join(sorted(SERVICES))}")
    sealer = Sealer.from_settings(settings.sealing)  # no key: refuse before connecting
    keyring = keyring or participant_keyring(name, settings)  # likewise
    redis = Redis.from_url(str(settings.redis.url))
    try:
        broker = await Broker.connect(
            str(settings.rabbit.url), settings.topology,
            prefetch=settings.rabbit.prefetch, queue_type=settings.rabbit.queue_type,
            wait_s=settings.rabbit.connect_wait_s,
            dead_marks=RedisDeadLetterMarks(redis, settings.namespace), sealer=sealer,
        )  # fmt: skip
        try:
            if not await _await_topology(broker, name, stop):
                return
            handlers = services[name](redis, settings.namespace)
            metrics = PrometheusWorkerMetrics()
            metrics.register(name, list(handlers))
            worker = Worker(
                name, handlers, broker, redis, settings.namespace, settings.participant,
                keyring=keyring, metrics=metrics,
            )  # fmt: skip
            worker.failures = FailureCounts(settings.rabbit.poison_after)
            checks = {"rabbitmq": broker_ready(broker), "redis": redis_ready(redis)}
            alive = {"consumers": consumer_alive(broker, worker.failures)}
            async with serving(metrics.registry, checks, settings.metrics.port,
                               settings.metrics.host, liveness=alive):  # fmt: skip
                await worker.run(stop)
        finally:
            await broker.close()
    finally:
        await redis.aclose()
