"""The floor: Baton's message flow with nothing else, for ``baton bench --floor``.

A stateless relay in plain aio-pika that moves a saga exactly as the orchestrator does on
the wire (start message in; the four commands, each after the previous reply; the
``started`` and ``completed`` lifecycle events out; the same topology, persistence,
confirms, acks and prefetch) but keeps its sagas in a dict, validates nothing, logs
nothing and has no outbox, history or deadlines. No orchestrator with Baton's message flow
can cost less, so Baton / floor is what Baton's guarantees cost, and floor / baseline is
what the flow itself costs (the start hop and the two events) against a bare round trip.
It signs what it publishes with the orchestrator's key (participants execute nothing else)
and verifies nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from baton.bench.baseline import STEPS
from contracts import envelope as env
from contracts.events import Lifecycle, SagaEvent
from contracts.topology import Topology
from messaging.transport.coalesce import coalesce_frame_writes
from messaging.transport.codec import Wire
from messaging.transport.failover import node_urls
from messaging.trust.signing import Keyring
from orchestrator.core.catalog import saga_id_for

SAGA = "payment"


class FloorRelay:
    """Relays payment sagas until ``stop``; the bench runs it as a process of its own."""

    def __init__(self, url: str, topology: Topology, keyring: Keyring, *, prefetch: int) -> None:
        self._url = url
        self._topology = topology
        self._keyring = keyring
        self._prefetch = prefetch
        self._outputs: dict[str, dict[str, Any]] = {}  # saga id -> outputs so far
        self._steps: dict[str, int] = {}  # saga id -> index of the step awaited
        self._commands: AbstractExchange | None = None
        self._events: AbstractExchange | None = None

    async def run(self, stop: asyncio.Event) -> None:
        coalesce_frame_writes()  # the same transport as every other process of the bench
        connection = await aio_pika.connect(node_urls(self._url)[0])  # a cluster: one node
        try:
            publisher = await connection.channel(publisher_confirms=True)
            self._commands = await publisher.get_exchange(self._topology.commands_exchange)
            self._events = await publisher.get_exchange(self._topology.events_exchange)
            for name, handler in (
                (self._topology.start_queue, self._on_start),
                (self._topology.replies_queue, self._on_reply),
            ):
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self._prefetch)
                queue = await channel.declare_queue(name, passive=True)
                await queue.consume(handler, no_ack=False)
            await stop.wait()
        finally:
            await connection.close()

    async def _on_start(self, message: AbstractIncomingMessage) -> None:
        saga_id = saga_id_for(SAGA, json.loads(message.body)["idempotency_key"])
        self._outputs[saga_id] = {}
        self._steps[saga_id] = 0
        await asyncio.gather(self._event(saga_id, "started"), self._command(saga_id))
        await message.ack()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        raw = (message.headers or {}).get(env.H_SAGA_ID, b"")
        saga_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        if saga_id not in self._steps:  # a duplicate after the saga ended: nothing to do
            await message.ack()
            return
        self._outputs[saga_id].update(json.loads(message.body))
        self._steps[saga_id] += 1
        if self._steps[saga_id] < len(STEPS):
            await self._command(saga_id)
        else:
            del self._outputs[saga_id], self._steps[saga_id]
            await self._event(saga_id, "completed")
        await message.ack()

    async def _command(self, saga_id: str) -> None:
        assert self._commands is not None
        step, participant, build = STEPS[self._steps[saga_id]]
        command = build(self._outputs[saga_id])
        envelope = env.Envelope(
            kind=command.KIND,
            saga_id=saga_id,
            saga=SAGA,
            step=step,
            effect_id=f"{saga_id}:{step}",
            attempt=1,
        )
        message = self._message(command.model_dump_json(), envelope)
        await self._commands.publish(message, participant)

    async def _event(self, saga_id: str, event: Lifecycle) -> None:
        assert self._events is not None
        body = SagaEvent(saga_id=saga_id, saga=SAGA, event=event, status=event)
        envelope = env.Envelope(kind=SagaEvent.KIND, saga_id=saga_id, saga=SAGA)
        routing_key = self._topology.event_routing_key(SAGA, event)
        await self._events.publish(
            self._message(body.model_dump_json(), envelope), routing_key, mandatory=False
        )

    def _message(self, body: str, envelope: env.Envelope) -> aio_pika.Message:
        wire = self._keyring.sign(
            Wire(body.encode(), envelope.kind, envelope.message_id, envelope.saga_id,
                 headers=envelope.headers())
        )  # fmt: skip
        return aio_pika.Message(
            wire.body,
            headers=dict(wire.headers),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope.message_id,
            correlation_id=envelope.saga_id,
            type=envelope.kind,
        )
