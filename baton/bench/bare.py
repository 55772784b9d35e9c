"""Bare participants: the no-op participants without Baton's worker SDK, for ``baton bench``.

Each consumes its command queue in plain aio-pika (the same prefetch, manual acks and
frame coalescing as every process of the bench) and answers every command with the same
success reply the no-op SDK participant sends (``participants/payments/noop.py``), published
persistent and confirmed to the replies exchange before the command is acked. It keeps no
inbox, verifies no signature and signs no reply. The bench runs the baseline driver against
these too, so SDK participants' CPU / bare participants' CPU (``sdk_cpu_ratio``) is what the
SDK's guarantees cost a participant. Each runs as ``baton bench-floor --bare NAME`` (hidden).

The command queues are shared: only one set of participants may consume at a time, so
``bare_participants`` stops the SDK participants, runs these while measured, and brings the
SDK participants back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast
from uuid import uuid4

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from baton.processes import ProcessGroup
from baton.runtime import PARTICIPANTS, wait_for_consumers
from baton_sdk import MessageContext
from contracts import envelope as env
from contracts.base import Reply
from contracts.topology import Topology
from messaging.text import as_text
from messaging.transport.amqp import Broker
from messaging.transport.coalesce import coalesce_frame_writes
from messaging.transport.failover import node_urls
from messaging.trust.signing import KeySet
from participants.payments.noop import noop_answers

PREFIX = "bare-"  # the bare processes' names in the bench's process group
# The command's saga position, copied onto the reply as the SDK's reply envelope carries it
_COPIED = (env.H_SAGA_ID, env.H_SAGA, env.H_STEP, env.H_PHASE, env.H_EFFECT_ID,
           env.H_COMPENSATES, env.H_ATTEMPT, env.H_SCHEMA)  # fmt: skip


class BareParticipant:
    """Answers ``name``'s commands until ``stop``; the bench runs it as a process of its own."""

    def __init__(self, url: str, topology: Topology, name: str, *, prefetch: int) -> None:
        self._url = url
        self._topology = topology
        self._name = name
        self._prefetch = prefetch
        self._answers: dict[str, Callable[[MessageContext], Reply]] = {
            command.KIND: build for command, build in noop_answers(name)
        }
        self._replies: AbstractExchange | None = None

    async def run(self, stop: asyncio.Event) -> None:
        coalesce_frame_writes()  # the same transport as every other process of the bench
        connection = await aio_pika.connect(node_urls(self._url)[0])  # a cluster: one node
        try:
            publisher = await connection.channel(publisher_confirms=True)
            self._replies = await publisher.get_exchange(self._topology.replies_exchange)
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            name = self._topology.command_queue(self._name)
            queue = await channel.declare_queue(name, passive=True)
            await queue.consume(self._on_command, no_ack=False)
            await stop.wait()
        finally:
            await connection.close()

    async def _on_command(self, message: AbstractIncomingMessage) -> None:
        assert self._replies is not None
        build = self._answers.get(message.type or "")
        if build is None:  # the bench sends no other command: refuse it, as a bare one would
            await message.reject(requeue=False)
            return
        headers = message.headers or {}
        reply = build(_context(headers, message.message_id))
        answer = aio_pika.Message(
            reply.model_dump_json().encode(),
            headers={name: headers[name] for name in _COPIED if name in headers},
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=uuid4().hex,
            correlation_id=message.correlation_id,
            type=reply.KIND,
        )
        await self._replies.publish(answer, self._topology.replies_queue)  # waits the confirm
        await message.ack()


def _context(headers: dict[str, Any], message_id: str | None) -> MessageContext:
    """The handler context the SDK would pass, read straight from the headers (unchecked)."""
    return MessageContext(
        saga_id=as_text(headers.get(env.H_SAGA_ID)),
        saga=as_text(headers.get(env.H_SAGA)),
        step=as_text(headers.get(env.H_STEP)),
        phase=cast(env.Phase, as_text(headers.get(env.H_PHASE)) or "forward"),
        effect_id=as_text(headers.get(env.H_EFFECT_ID)),
        compensates=as_text(headers.get(env.H_COMPENSATES)),
        attempt=int(as_text(headers.get(env.H_ATTEMPT)) or 0),
        traceparent="",
        message_id=message_id or "",
    )


@asynccontextmanager
async def bare_participants(
    group: ProcessGroup, broker: Broker, keys: KeySet
) -> AsyncIterator[None]:
    """The bare participants in the SDK participants' place while the block runs, then the
    SDK participants back (fresh processes, each with its own key as at the bench's start)."""
    queues = [broker.topology.command_queue(name) for name in PARTICIPANTS]
    await _swap(group, broker, queues, list(PARTICIPANTS))
    for name in PARTICIPANTS:
        group.spawn(f"{PREFIX}{name}", "bench-floor", "--bare", name)
    try:
        await wait_for_consumers(broker, dict.fromkeys(queues, 1))
        yield
    finally:
        await _swap(group, broker, queues, [f"{PREFIX}{name}" for name in PARTICIPANTS])
        for name in PARTICIPANTS:
            group.spawn(name, "participant", name, "--noop", env=keys.env(name))
        await wait_for_consumers(broker, dict.fromkeys(queues, 1))


async def _swap(group: ProcessGroup, broker: Broker, queues: list[str], names: list[str]) -> None:
    """Stop ``names`` and wait until their queues have no consumer left."""
    for name in names:
        group.stop(name)
    async with asyncio.timeout(60):
        for queue in queues:
            while await broker.consumer_count(queue) > 0:  # noqa: ASYNC110 - polls the broker
                await asyncio.sleep(0.1)
