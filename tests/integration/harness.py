"""An in-process Baton on the real broker and Redis, and a participant the test scripts by hand.

Everything is signed as deployed: the orchestrator with its key from the settings, starts as
the upstream ``cli``, and a scripted participant's replies with the key of the participant
it plays (all from the session's ``keys``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import uuid4

import redis.asyncio as aioredis
from aio_pika.abc import AbstractIncomingMessage

from contracts.base import Contract, Start
from contracts.envelope import Envelope
from messaging.errors import ContractError
from messaging.settings import Settings
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import decode, encode
from messaging.trust.sealing import Sealer
from messaging.trust.signing import ORCHESTRATOR, Keyring, KeySet
from orchestrator.core.catalog import Catalog, saga_id_for
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.state import SagaState
from orchestrator.runtime.definition_registry import DefinitionRegistry
from orchestrator.runtime.redis_store import RedisSagaStore
from orchestrator.runtime.runner import Orchestrator, RunnerConfig
from orchestrator.runtime.sealed_fields import SealedFields, sensitive_fields
from participants.payments.contracts import payment_contracts
from tests.support.sagas import catalog as catalog_of
from tests.support.sagas import parse, payment_data

T = TypeVar("T")
TYPED = payment_contracts()


def fast_payment(
    timeout_s: float = 1.0,
    deadline_s: float = 60.0,
    max_attempts: int = 3,
    give_up_after_s: float = 0.0,
) -> SagaDefinition:
    """The payment saga with short timeouts and backoffs, so timeout tests run in seconds."""
    data = payment_data()
    data["deadline_s"] = deadline_s
    for step in data["steps"]:
        for action in filter(None, (step["action"], step.get("compensation"))):
            action["timeout_s"] = timeout_s
            action["retry"].update(
                initial_backoff_s=0.05, max_backoff_s=0.2, give_up_after_s=give_up_after_s
            )
        step["action"]["retry"]["max_attempts"] = max_attempts
    return parse(data)


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout_s: float = 15.0, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s: {what}")
        await asyncio.sleep(0.02)


@dataclass
class Baton:
    """A running orchestrator replica plus helpers to start sagas and await their outcome."""

    broker: Broker
    store: RedisSagaStore
    orchestrator: Orchestrator
    settings: Settings
    upstream: Keyring  # signs the starts, as the upstream "cli"
    finals: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)  # every event on reply_to
    reply_queue: str = ""

    async def start(self, body: Start, *, saga: str = "payment") -> str:
        envelope = Envelope(kind=body.KIND, saga_id="-", reply_to=self.reply_queue)
        await self.broker.publish(
            self.upstream.sign(encode(envelope, body)), exchange="",
            routing_key=self.broker.topology.start_queue,
        )  # fmt: skip
        return saga_id_for(saga, body.idempotency_key)

    async def final(self, saga_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """The saga's final event (sent to the start's reply_to)."""

        async def arrived() -> dict[str, Any] | None:
            return self.finals.get(saga_id)

        return await eventually(arrived, timeout_s, f"final event of {saga_id}")

    async def state(self, saga_id: str) -> SagaState:
        state = await self.store.load(saga_id)
        assert state is not None, f"saga {saga_id} is not in the store"
        return state

    async def dead_letters(self, queue: str) -> int:
        return await self.broker.queue_depth(self.broker.topology.dead_letter_queue(queue))


@asynccontextmanager
async def running_baton(
    broker: Broker,
    redis_client: aioredis.Redis,
    settings: Settings,
    catalog: Catalog | None = None,
    *,
    keys: KeySet,
    sealer: Sealer | None = None,
    definitions: DefinitionRegistry | None = None,
) -> AsyncIterator[Baton]:
    """One orchestrator replica, in this process, until the block ends.

    It signs with the key in ``settings.signing``; starts are signed with ``keys``' ``cli``.
    With ``sealer`` the store seals as a deployed one does (tests of data at rest); with
    ``definitions`` it registers its versions there as it starts, as a deployed one does.
    """
    catalog = catalog or catalog_of(fast_payment())
    store = RedisSagaStore(
        redis_client,
        namespace=settings.namespace,
        shards=settings.orchestrator.shards,
        retention_s=3600,
        sealed=SealedFields(sealer, sensitive_fields(catalog)) if sealer else None,
    )
    orchestrator = Orchestrator(
        catalog,
        store,
        broker,
        keyring=Keyring.from_settings(settings.signing, role=ORCHESTRATOR),
        config=RunnerConfig(tick_interval_s=0.02, outbox_grace_s=0.5),
        definitions=definitions,
    )
    baton = Baton(broker, store, orchestrator, settings, keys.keyring("cli"))
    channel = await broker.connection.channel()
    # under the prefix the orchestrator answers (a robust channel's anonymous queue is amq_…)
    reply_queue = f"{broker.topology.reply_prefix}{uuid4().hex}"
    queue = await channel.declare_queue(reply_queue, exclusive=True, auto_delete=True)

    async def on_final(message: AbstractIncomingMessage) -> None:
        await message.ack()
        event = json.loads(message.body)
        baton.answers.append(event)
        if event["event"] in ("completed", "compensated", "failed"):
            baton.finals[event["saga_id"]] = event

    await queue.consume(on_final)
    baton.reply_queue = queue.name
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    try:
        yield baton
    finally:
        stop.set()
        await task
        with suppress(Exception):
            await channel.close()


@dataclass
class Received:
    envelope: Envelope
    body: Contract


class ScriptedParticipant:
    """Takes commands off a participant's queue and lets the test decide what to answer.

    It takes only commands signed by the orchestrator (others are kept in ``refused``) and
    signs its replies as the participant ``name``, with the session's ``keys``.
    """

    def __init__(self, broker: Broker, name: str, keys: KeySet) -> None:
        self._broker = broker
        self.name = name
        self.keyring = keys.keyring(name)
        self.inbox: asyncio.Queue[Received] = asyncio.Queue()
        self.refused: list[str] = []  # why commands were not taken

    async def start(self) -> ScriptedParticipant:
        async def on_command(message: AbstractIncomingMessage) -> None:
            await message.ack()
            wire = wire_of(message)
            try:
                self.keyring.verify_from(wire, (ORCHESTRATOR,), "commands")
            except ContractError as exc:
                self.refused.append(exc.reason)
                return
            envelope, body = decode(wire, TYPED)  # the participants' typed classes
            await self.inbox.put(Received(envelope, body))

        await self._broker.consume(self._broker.topology.command_queue(self.name), on_command)
        return self

    async def next(self, timeout_s: float = 15.0) -> Received:
        return await asyncio.wait_for(self.inbox.get(), timeout_s)

    async def reply(self, to: Received, body: Contract, *, attempt: int | None = None) -> None:
        envelope = to.envelope.reply(body.KIND)
        if attempt is not None:
            envelope = envelope.model_copy(update={"attempt": attempt})
        t = self._broker.topology
        await self._broker.publish(
            self.keyring.sign(encode(envelope, body)), exchange=t.replies_exchange,
            routing_key=t.replies_queue,
        )  # fmt: skip
