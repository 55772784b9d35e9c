"""What the console reads, through the same store, registry and dead-letter code as the CLI.

Given only the URLs: the store is read without the sealing key (nothing sealed is opened;
``masking`` shows it as ``***``), and which fields are sensitive comes from the definition
this configuration loads, else from the version registered in Redis
(``orchestrator.runtime.definition_registry``), else every field is masked.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiormq.exceptions import AMQPError

from baton import deadletters
from baton.operate import _hidden
from baton.runtime import load_catalog, open_broker
from messaging.errors import BatonError
from messaging.observability.logs import masked
from messaging.settings import Settings
from messaging.transport.amqp import Broker
from orchestrator.core.catalog import Catalog, saga_id_for
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.definition_registry import (
    DefinitionRegistry,
    RegisteredDefinition,
    message_kinds,
)
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.redis_store import RedisSagaStore

MAX_LIMIT = 500
DEAD_LETTERS_PER_QUEUE = 50


@dataclass(frozen=True, slots=True)
class SagaRow:
    """One search result."""

    saga_id: str
    saga: str
    version: int
    status: str
    idempotency_key: str
    updated_at: float
    idle_s: float


@dataclass(frozen=True, slots=True)
class Sensitive:
    """The field names to mask in a saga's input and in its steps' outputs (None: all)."""

    input: frozenset[str] | None
    output: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class DeadQueue:
    """A dead-letter queue as peeked: its letters, or why it could not be read."""

    queue: str
    letters: tuple[deadletters.DeadLetter, ...]
    error: str = ""


def local_catalog(settings: Settings) -> Catalog | None:
    """This configuration's definitions, or None: the console then relies on the registry."""
    try:
        return load_catalog(settings)
    except (BatonError, OSError):
        return None


class ConsoleReader:
    """Read-only access to one namespace's sagas, definitions and dead letters."""

    def __init__(self, settings: Settings, client: aioredis.Redis, local: Catalog | None) -> None:
        self._settings = settings
        self._local = local
        self.client = client
        orchestrator = settings.orchestrator
        self.store = RedisSagaStore(  # no ``sealed``: what is sealed stays sealed
            client,
            namespace=settings.namespace,
            shards=orchestrator.shards,
            retention_s=orchestrator.retention_s,
        )
        keys = KeySpace(settings.namespace, orchestrator.shards)
        self.registry = DefinitionRegistry(client, keys)

    async def counts(self) -> dict[str, int]:
        return {status.value: n for status, n in (await self.store.counts()).items()}

    async def saga_names(self) -> list[str]:
        local = {d.name for d in self._local.all()} if self._local else set()
        return sorted(local | {r.name for r in await self.registry.all()})

    async def find(self, query: str) -> list[SagaRow]:
        """The saga with id ``query``, else those whose idempotency key it is (one per
        definition name: the saga id is derived from name and key)."""
        candidates = [query, *(saga_id_for(name, query) for name in await self.saga_names())]
        states = await asyncio.gather(*(self.store.load(c) for c in dict.fromkeys(candidates)))
        return [_row(state, time.time()) for state in states if state is not None]

    async def by_status(
        self, statuses: list[SagaStatus], idle_s: float, limit: int
    ) -> list[SagaRow]:
        """Sagas in ``statuses`` not updated for ``idle_s``, least recently updated first."""
        now = time.time()
        before = now - idle_s if idle_s else None
        found: list[tuple[str, float]] = []
        for status in statuses:
            found += await self.store.by_status(status, limit, before)
        found = sorted(found, key=lambda pair: pair[1])[:limit]
        states = await asyncio.gather(*(self.store.load(saga_id) for saga_id, _ in found))
        return [_row(state, now) for state in states if state is not None]

    async def saga(self, saga_id: str) -> tuple[SagaState, list[dict[str, str]]] | None:
        state = await self.store.load(saga_id)
        if state is None:
            return None
        return state, await self.store.history(saga_id)

    async def sensitive(self, state: SagaState) -> Sensitive:
        """The local definition first (as ``baton status``), else the registered version."""
        catalog = self._local
        local = catalog.get(state.saga, state.definition_version) if catalog else None
        if catalog is not None and local is not None:
            kinds = message_kinds(local)
            output = frozenset().union(*(_local_sensitive(catalog, k) for k in kinds))
            return Sensitive(_hidden(state, catalog), output)
        record = await self.registry.get(state.saga, state.definition_version)
        if record is None:
            return Sensitive(None, None)
        return Sensitive(record.sensitive(record.trigger), _all_sensitive(record))

    async def participants(self) -> list[str]:
        found = list(self._local.participants) if self._local else []
        for record in await self.registry.all():
            try:
                found += record.parse().participants
            except BatonError:
                continue  # a registration this Baton cannot read: its queues stay unlisted
        return list(dict.fromkeys(found))

    async def dead_letters(self) -> list[DeadQueue]:
        """Every dead-letter queue's letters, peeked (``baton.deadletters.peek``: they are
        requeued, nothing is removed). Needs RabbitMQ; a failure is one line per queue."""
        participants = await self.participants()
        topology = self._settings.topology
        queues = [topology.dead_letter_queue(q) for q in topology.work_queues(participants)]
        try:
            async with open_broker(self._settings) as broker:
                return [await _peek(broker, q) for q in queues]
        except (OSError, TimeoutError, BatonError) as exc:
            error = f"rabbitmq: {masked(str(exc) or type(exc).__name__)}"
            return [DeadQueue(q, (), error) for q in queues]


async def _peek(broker: Broker, queue: str) -> DeadQueue:
    try:
        if not await broker.queue_depth(queue):
            return DeadQueue(queue, ())
        letters = await deadletters.peek(broker, queue, DEAD_LETTERS_PER_QUEUE)
    except AMQPError as exc:  # a queue not declared (yet) is shown as such, not fatal
        return DeadQueue(queue, (), f"not readable: {masked(str(exc) or type(exc).__name__)}")
    return DeadQueue(queue, tuple(letters))


def _row(state: SagaState, now: float) -> SagaRow:
    return SagaRow(
        state.saga_id, state.saga, state.definition_version, state.status.value,
        state.idempotency_key, state.updated_at, max(now - state.updated_at, 0.0),
    )  # fmt: skip


def _local_sensitive(catalog: Catalog, kind: str) -> frozenset[str]:
    model = catalog.contracts.get(kind)
    return model.SENSITIVE if model is not None else frozenset()


def _all_sensitive(record: RegisteredDefinition) -> frozenset[str]:
    """Every field any of the version's contracts marks sensitive: an output is masked by
    name, whichever reply wrote it."""
    return frozenset().union(*(record.sensitive(kind) for kind in record.contracts))
