"""The four payment participants by name, and the process that runs one of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress

import structlog
from redis.asyncio import Redis

from messaging.amqp import Broker
from messaging.dead_marks import RedisDeadLetterMarks
from messaging.health import broker_ready, redis_ready, serving
from messaging.settings import Settings
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


async def _declare(broker: Broker, name: str, stop: asyncio.Event) -> None:
    """Declare this participant's queue, waiting out a broker that goes down as we start."""
    while not stop.is_set():
        try:
            await broker.declare([name])
        except Exception:  # the robust connection is reconnecting: try again shortly
            log.warning("declare_failed", participant=name, exc_info=True)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        else:
            return


async def run_participant(
    name: str, settings: Settings, stop: asyncio.Event, *, noop: bool = False
) -> None:
    """Connect, declare this participant's queue, work until ``stop`` is set, close everything.

    ``noop`` swaps the real service for one answering every command at once (``baton bench``).
    """
    services = NOOP_SERVICES if noop else SERVICES
    if name not in services:
        raise ValueError(f"unknown participant {name!r}; known: {', '.join(sorted(SERVICES))}")
    redis = Redis.from_url(str(settings.redis.url))
    try:
        broker = await Broker.connect(
            str(settings.rabbit.url), settings.topology,
            prefetch=settings.rabbit.prefetch, queue_type=settings.rabbit.queue_type,
            wait_s=settings.rabbit.connect_wait_s,
            dead_marks=RedisDeadLetterMarks(redis, settings.namespace),
        )  # fmt: skip
        try:
            await _declare(broker, name, stop)
            handlers = services[name](redis, settings.namespace)
            metrics = PrometheusWorkerMetrics()
            metrics.register(name, list(handlers))
            worker = Worker(
                name, handlers, broker, redis, settings.namespace, settings.participant,
                metrics=metrics,
            )  # fmt: skip
            checks = {"rabbitmq": broker_ready(broker), "redis": redis_ready(redis)}
            async with serving(metrics.registry, checks, settings.metrics.port):
                await worker.run(stop)
        finally:
            await broker.close()
    finally:
        await redis.aclose()
