"""The baseline: a plain aio-pika command/reply driver with no orchestrator and no store.

It sends the payment saga's four commands in sequence, each to the same no-op participant
processes Baton's orchestrator talks to, over the same topology and with the same
reliability settings (persistent messages, publisher confirms, manual acks, the same
prefetch), and waits for each reply before sending the next. What it leaves out is
exactly what Baton adds: the saga state in Redis, the outbox, history and deadlines,
validation of every reply, lifecycle events. So Baton / baseline is the cost of
orchestration itself, and the baseline is the practical limit of a Python command/reply
round trip on this machine. Like every process of the bench it uses Baton's aiormq frame
coalescing (``messaging/transport/coalesce.py``), so the ratios compare orchestration, not
transport.
It signs its commands with the orchestrator's key (participants execute nothing else) and
verifies no reply.

The participants are the same processes and the same SDK in both runs (inbox lookup,
tombstone check, stored reply, confirmed publish): their cost is in both sides of every
ratio, which makes the ratios conservative (closer to 1) but honest about what a saga
costs end to end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from contracts import envelope as env
from contracts.base import Command
from contracts.money import Money
from contracts.topology import Topology
from messaging.text import as_text
from messaging.transport.coalesce import coalesce_frame_writes
from messaging.transport.codec import Wire
from messaging.transport.failover import node_urls
from messaging.trust.signing import Keyring
from participants.payments.contracts import (
    AssessRisk,
    AuthorizePayment,
    CaptureTransaction,
    CheckCompliance,
)

AMOUNT = Money(minor=1_000, currency="EUR")
ACCOUNT, MERCHANT, TOKEN = "acct_bench", "merchant_bench", "tok_benchmark01"

# The payment saga's forward steps: (step, participant, the command from earlier outputs).
STEPS: tuple[tuple[str, str, Callable[[dict[str, Any]], Command]], ...] = (
    ("authorize_payment", "payment", lambda _: AuthorizePayment(account_id=ACCOUNT, amount=AMOUNT)),
    (
        "assess_risk",
        "risk",
        lambda _: AssessRisk(account_id=ACCOUNT, merchant_id=MERCHANT, amount=AMOUNT),
    ),
    (
        "check_compliance",
        "pci",
        lambda _: CheckCompliance(card_token=TOKEN, merchant_id=MERCHANT),
    ),
    (
        "capture_transaction",
        "transaction",
        lambda out: CaptureTransaction(
            hold_id=out["hold_id"],
            merchant_id=MERCHANT,
            amount=AMOUNT,
            attestation_id=out["attestation_id"],
        ),
    ),
)


class BaselineDriver:
    """Runs command/reply "sagas" straight over aio-pika. Use as an async context manager."""

    def __init__(self, url: str, topology: Topology, keyring: Keyring, *, prefetch: int) -> None:
        self._url = url
        self._topology = topology
        self._keyring = keyring
        self._prefetch = prefetch
        self._waiting: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._commands: AbstractExchange | None = None

    async def __aenter__(self) -> BaselineDriver:
        coalesce_frame_writes()  # the same transport as every other process of the bench
        # of a cluster, its first node: the baseline has no failover to measure
        self._connection = await aio_pika.connect(node_urls(self._url)[0])
        publisher: AbstractChannel = await self._connection.channel(publisher_confirms=True)
        self._commands = await publisher.get_exchange(self._topology.commands_exchange)
        consumer = await self._connection.channel()
        await consumer.set_qos(prefetch_count=self._prefetch)
        replies = await consumer.declare_queue(self._topology.replies_queue, passive=True)
        await replies.consume(self._on_reply, no_ack=False)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        key = (as_text(headers.get(env.H_SAGA_ID, "")), as_text(headers.get(env.H_STEP, "")))
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(json.loads(message.body))
        await message.ack()

    async def saga(self) -> float:
        """One four-step saga; its latency in seconds."""
        assert self._commands is not None, "use the driver as an async context manager"
        saga_id = uuid4().hex
        began = time.perf_counter()
        outputs: dict[str, Any] = {}
        for step, participant, build in STEPS:
            command = build(outputs)
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._waiting[(saga_id, step)] = future
            envelope = env.Envelope(
                kind=command.KIND,
                saga_id=saga_id,
                saga="payment",
                step=step,
                effect_id=uuid4().hex,
                attempt=1,
            )
            wire = self._keyring.sign(
                Wire(command.model_dump_json().encode(), command.KIND, envelope.message_id,
                     saga_id, headers=envelope.headers())
            )  # fmt: skip
            message = aio_pika.Message(
                wire.body,
                headers=dict(wire.headers),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=envelope.message_id,
                correlation_id=saga_id,
                type=command.KIND,
            )
            await self._commands.publish(message, participant)  # waits for the confirm
            outputs.update(await future)
        return time.perf_counter() - began
