"""Connections built from Settings: the only place that opens them for the CLI commands."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass

from redis.exceptions import RedisError

from messaging.errors import SealingKeyError
from messaging.redis_client import redis_for
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from messaging.transport.dead_marks import RedisDeadLetterMarks
from messaging.trust.sealing import ACTIVE_VARIABLE, KEYS_VARIABLE, Sealer, generate_key
from messaging.trust.signing import ORCHESTRATOR, Keyring, KeySet
from orchestrator.core.catalog import Catalog
from orchestrator.core.definition import load_definition
from orchestrator.runtime.audit_store import AuditStore
from orchestrator.runtime.chaos import CrashPoints
from orchestrator.runtime.definition_registry import DefinitionRegistry
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.packages import Packages, default_package_paths, load_packages, prove_safe
from orchestrator.runtime.redis_store import RedisSagaStore
from orchestrator.runtime.runner import Orchestrator, RunnerConfig
from orchestrator.runtime.sealed_fields import SealedFields, SensitiveFields, sensitive_fields

CONNECT_TIMEOUT_S = 10.0  # a server that accepts nothing, not even a refusal, fails in this


def load_saga_packages(settings: Settings) -> Packages:
    """The configured saga packages (``BATON_ORCHESTRATOR__PACKAGES``), else the bundled ones."""
    return load_packages(settings.orchestrator.packages or default_package_paths())


def load_catalog(settings: Settings) -> Catalog:
    """The packages' definitions plus any definition files named in the settings, checked
    against the packages' contracts; the catalog carries that registry."""
    packages = load_saga_packages(settings)
    extra = [load_definition(path, packages.registry) for path in settings.orchestrator.definitions]
    for definition in extra:
        prove_safe(definition)  # as the packages' own definitions were
    return Catalog([*packages.definitions, *extra], packages.registry)


@asynccontextmanager
async def open_broker(
    settings: Settings, *, wait_s: float = 0.0, sealer: Sealer | None = None
) -> AsyncIterator[Broker]:
    """Operator commands fail fast (``wait_s`` 0); daemons wait for a restarting broker.

    The broker gets the deployment's dead-letter marks, so an orchestrator copies a
    redelivered dead letter once and ``baton dlq replay`` clears the mark of what it replays.
    Redis is only asked when one of those happens: commands that do neither never touch it.
    """
    redis = redis_for(settings.redis, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        async with asyncio.timeout(wait_s + CONNECT_TIMEOUT_S):  # a host that never answers
            broker = await Broker.connect(
                str(settings.rabbit.url),
                settings.topology,
                prefetch=settings.rabbit.prefetch,
                queue_type=settings.rabbit.queue_type,
                delivery_limit=settings.rabbit.delivery_limit,
                wait_s=wait_s,
                dead_marks=RedisDeadLetterMarks(redis, settings.namespace),
                sealer=sealer,  # consumers pass one: what they dead-letter is sealed
            )
        try:
            yield broker
        finally:
            await broker.close()
    finally:
        await redis.aclose()


async def wait_for_redis(settings: Settings, wait_s: float = 0.0) -> None:
    """Ping Redis until it answers, for up to ``wait_s`` (a daemon's
    ``BATON_RABBIT__CONNECT_WAIT_S``): a process that would otherwise wait for its queues
    forever fails fast, in one line, when Redis is not there (RedisError)."""
    client = redis_for(settings.redis, socket_connect_timeout=CONNECT_TIMEOUT_S)
    loop = asyncio.get_running_loop()
    give_up_at, delay = loop.time() + wait_s, 0.5
    try:
        while True:
            try:
                await client.ping()
            except RedisError:
                if loop.time() + delay > give_up_at:
                    raise
                await asyncio.sleep(delay)  # backing off before the next attempt
                delay = min(delay * 2, 5.0)
            else:
                return
    finally:
        await client.aclose()


@asynccontextmanager
async def open_store(
    settings: Settings, *, catalog: Catalog | None = None, sealer: Sealer | None = None
) -> AsyncIterator[RedisSagaStore]:
    """The saga store, always sealing: no sealing key raises SealingKeyError first."""
    sealer = sealer or Sealer.from_settings(settings.sealing)
    async with _store(settings, SealedFields(sealer, _sensitive(settings, catalog))) as store:
        yield store


@asynccontextmanager
async def open_reader(
    settings: Settings, *, catalog: Catalog | None = None
) -> AsyncIterator[RedisSagaStore]:
    """The saga store for a command that only reads and masks what it shows (``status``,
    ``list``, ``stuck``, ``top``, ``books``): with a sealing key it opens sealed fields as
    ``open_store`` does; without one they stay sealed, which every reader masks anyway, so
    these commands need only the URLs. Nothing is written through it."""
    try:
        sealer = Sealer.from_settings(settings.sealing)
    except SealingKeyError:
        sealed = None
    else:
        sealed = SealedFields(sealer, _sensitive(settings, catalog))
    async with _store(settings, sealed) as store:
        yield store


def _sensitive(settings: Settings, catalog: Catalog | None) -> SensitiveFields:
    return sensitive_fields(catalog or load_catalog(settings))


def _store(
    settings: Settings, sealed: SealedFields | None
) -> AbstractAsyncContextManager[RedisSagaStore]:
    return RedisSagaStore.connect(
        str(settings.redis.url),
        namespace=settings.namespace,
        shards=settings.orchestrator.shards,
        retention_s=settings.orchestrator.retention_s,
        sealed=sealed,
    )


@dataclass
class Runtime:
    catalog: Catalog
    store: RedisSagaStore
    broker: Broker
    orchestrator: Orchestrator


def orchestrator_keyring(settings: Settings, catalog: Catalog) -> Keyring:
    """The orchestrator's signing key and trust: SigningKeyError (naming the variable) without
    its private key, or without a public key of each participant and upstream it hears."""
    keyring = Keyring.from_settings(settings.signing, role=ORCHESTRATOR)
    keyring.require_trust([*catalog.participants, *keyring.upstreams])
    return keyring


@asynccontextmanager
async def open_definitions(settings: Settings) -> AsyncIterator[DefinitionRegistry]:
    """The definitions registered in Redis (``orchestrator.runtime.definition_registry``): all an
    operator's tool needs to read a saga of a version it does not load is the Redis URL."""
    client = redis_for(settings.redis, socket_connect_timeout=5, socket_timeout=30)
    try:
        yield DefinitionRegistry(client, KeySpace(settings.namespace, settings.orchestrator.shards))
    finally:
        await client.aclose()


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    wait_s: float = 0.0,
    keyring: Keyring | None = None,
    catalog: Catalog | None = None,
) -> AsyncIterator[Runtime]:
    """Everything an orchestrator replica (or an operator command) needs, connected.

    ``keyring`` defaults to the configured one: operator actions publish commands, which
    participants take only signed by the orchestrator. ``catalog`` defaults to the
    configured one (an operator command may add a registered version to it). The
    orchestrator registers its catalog's versions when it runs.
    """
    sealer = Sealer.from_settings(settings.sealing)  # no key: refuse before connecting
    catalog = catalog or load_catalog(settings)
    keyring = keyring or orchestrator_keyring(settings, catalog)  # no key: refuse, too
    async with (
        open_store(settings, catalog=catalog, sealer=sealer) as store,
        open_broker(settings, wait_s=wait_s, sealer=sealer) as broker,
        open_definitions(settings) as definitions,
        AuditStore.connect(
            str(settings.redis.url),
            namespace=settings.namespace,
            shards=settings.orchestrator.shards,
        ) as audit,  # fmt: skip
    ):
        config = RunnerConfig(
            tick_interval_s=settings.orchestrator.tick_interval_s,
            deadline_poll_s=settings.orchestrator.deadline_poll_s,
            start_prefetch=settings.orchestrator.start_prefetch,
            outbox_grace_s=settings.orchestrator.outbox_grace_s,
            stuck_after_s=settings.orchestrator.stuck_after_s,
            state_interval_s=settings.orchestrator.state_interval_s,
            start_ttl_s=settings.orchestrator.start_ttl_s,
            poison_after=settings.rabbit.poison_after,
        )
        crash = CrashPoints.of(settings.chaos.crash_points, settings.chaos.crash_rate)
        orchestrator = Orchestrator(
            catalog, store, broker, keyring=keyring, config=config, crash=crash,
            definitions=definitions,
        )  # fmt: skip
        orchestrator.operator_counts = audit  # exports baton_operator_actions_total
        yield Runtime(catalog, store, broker, orchestrator)


def sealing_env(settings: Settings) -> dict[str, str]:
    """The sealing keys for the processes of a run that owns its namespace (demo, bench):
    the configured ones, or else a fresh key that dies with the run and its data."""
    keys = settings.sealing.keys.get_secret_value()
    if keys.strip():
        return {KEYS_VARIABLE: keys, ACTIVE_VARIABLE: settings.sealing.active}
    return {KEYS_VARIABLE: json.dumps({"run": generate_key()}), ACTIVE_VARIABLE: "run"}


def run_keys(participants: Iterable[str] = ()) -> KeySet:
    """Signing keys for the processes of a run that owns its namespace (demo, bench): fresh
    ones for the orchestrator, each participant (the payment saga's unless named) and the
    driver (``cli``), dying with the run. Each process gets its own with ``KeySet.env``."""
    return KeySet.generate((ORCHESTRATOR, *(tuple(participants) or PARTICIPANTS), "cli"))


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so processes drain in-flight work before exiting."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


PARTICIPANTS = ("payment", "risk", "pci", "transaction")  # the payment saga's services


async def wait_for_consumers(
    broker: Broker, wanted: Mapping[str, int], timeout_s: float = 60.0
) -> None:
    """Block until each queue has its consumers: the spawned processes are up and listening."""
    async with asyncio.timeout(timeout_s):
        for queue, count in wanted.items():
            while await broker.consumer_count(queue) < count:  # noqa: ASYNC110 - polls the broker
                await asyncio.sleep(0.1)


async def remove_namespace(
    settings: Settings, broker: Broker, participants: Iterable[str] = ()
) -> None:
    """Delete a run's queues (those of ``participants``, the payment saga's unless named),
    exchanges and keys: shared services stay as they were.

    Only for a namespace the caller created (the demo's, the bench's): everything under its
    prefix goes. The separator it ends in keeps other namespaces out of the prefix; an empty
    namespace (the whole Redis) is refused.
    """
    if not settings.namespace:
        raise ValueError("refusing to remove the empty namespace: it is every key in Redis")
    t = broker.topology
    await broker.delete(t.all_queues(tuple(participants) or PARTICIPANTS), t.exchanges)
    client = redis_for(settings.redis)
    try:
        async for key in client.scan_iter(match=f"{settings.namespace}*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()
