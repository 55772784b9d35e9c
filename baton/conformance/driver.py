"""The kit's side of the wire: publish signed commands, hear the replies and dead letters.

It listens on two private queues (server-named, exclusive, gone when the kit disconnects)
bound next to the real ones: to the replies exchange with the replies queue's routing key,
and to the dead-letter exchange with the participant's dead-letter queue's routing key. So
it hears copies of what the participant publishes, whatever its language, and takes nothing
from the queues an orchestrator or an operator reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from baton.conformance.report import CheckFailed
from contracts import envelope as env
from contracts.pan import mask_pans
from messaging.errors import ContractError
from messaging.transport.amqp import Broker, wire_of
from messaging.transport.codec import Wire
from messaging.trust.signing import Keyring

MAX_SHOWN = 200  # characters of a body a failure message shows


@dataclass(frozen=True, slots=True)
class Heard:
    """A reply or dead letter as it arrived; ``signer`` when its signature verified."""

    wire: Wire
    signer: str = ""
    problem: str = ""  # why the signature did not verify

    def header(self, name: str) -> Any:
        return (self.wire.headers or {}).get(name)

    @property
    def saga_id(self) -> str:
        return str(self.header(env.H_SAGA_ID) or self.wire.correlation_id or "")

    @property
    def attempt(self) -> Any:
        return self.header(env.H_ATTEMPT)

    def body(self) -> Any:
        """The JSON body, or None when it is not JSON (compared, never trusted)."""
        try:
            return json.loads(self.wire.body)
        except ValueError:
            return None

    def describe(self, sensitive: Collection[str] = ()) -> str:
        """Kind and body, short, for a failure message: ``sensitive`` fields masked, and any
        card number (a reply must hold none, but the report is printed)."""
        body = self.body()
        if isinstance(body, dict):
            body = {k: "***" if k in sensitive else v for k, v in body.items()}
        text = json.dumps(body) if body is not None else self.wire.body.decode(errors="replace")
        return mask_pans(f"{self.wire.kind} {text[:MAX_SHOWN]}")


class Driver:
    """Publishes commands to one participant and collects what comes back, by saga id."""

    def __init__(
        self, broker: Broker, participant: str, keyring: Keyring, timeout_s: float
    ) -> None:
        self.broker = broker
        self.participant = participant
        self.timeout_s = timeout_s
        self._keyring = keyring
        self._replies: dict[str, list[Heard]] = {}
        self._dead: dict[str, Heard] = {}
        self._arrived = asyncio.Condition()

    @classmethod
    @asynccontextmanager
    async def listening(
        cls, broker: Broker, participant: str, keyring: Keyring, timeout_s: float
    ) -> AsyncIterator[Driver]:
        """A driver whose private queues are bound and consumed until the block ends."""
        driver = cls(broker, participant, keyring, timeout_s)
        channel = await broker.connection.channel(publisher_confirms=False)
        try:
            t = broker.topology
            dead_key = t.dead_letter_queue(t.command_queue(participant))
            await driver._bind(channel, t.replies_exchange, t.replies_queue, driver._on_reply)
            await driver._bind(channel, t.dead_letter_exchange, dead_key, driver._on_dead)
            yield driver
        finally:
            with suppress(Exception):
                await channel.close()

    @staticmethod
    async def _bind(
        channel: AbstractChannel,
        exchange: str,
        routing_key: str,
        handler: Callable[[AbstractIncomingMessage], Any],
    ) -> None:
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key)
        await queue.consume(handler, no_ack=True)

    @property
    def command_queue(self) -> str:
        return self.broker.topology.command_queue(self.participant)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        wire = wire_of(message)
        try:
            heard = Heard(wire, self._keyring.verify_from(wire, {self.participant}, "replies"))
        except ContractError as exc:
            heard = Heard(wire, problem=str(exc))
        async with self._arrived:
            self._replies.setdefault(heard.saga_id, []).append(heard)
            self._arrived.notify_all()

    async def _on_dead(self, message: AbstractIncomingMessage) -> None:
        wire = wire_of(message)
        async with self._arrived:
            self._dead[wire.message_id or ""] = Heard(wire)
            self._arrived.notify_all()

    async def publish(self, wire: Wire) -> None:
        """Send ``wire`` to the participant's command queue, with a confirm."""
        t = self.broker.topology
        await self.broker.publish(
            wire, exchange=t.commands_exchange, routing_key=t.command_routing_key(self.participant)
        )

    def heard(self, saga_id: str) -> list[Heard]:
        """Every reply for ``saga_id`` so far, in arrival order."""
        return list(self._replies.get(saga_id, ()))

    async def replies(self, saga_id: str, count: int, what: str) -> list[Heard]:
        """Wait for ``count`` replies for ``saga_id``; CheckFailed after the timeout."""
        try:
            async with asyncio.timeout(self.timeout_s), self._arrived:
                await self._arrived.wait_for(lambda: len(self.heard(saga_id)) >= count)
        except TimeoutError:
            got = len(self.heard(saga_id))
            raise CheckFailed(
                f"{what}: {got} of {count} replies within {self.timeout_s:g}s"
            ) from None
        return self.heard(saga_id)

    async def dead_letter(self, message_id: str, what: str) -> Heard:
        """Wait for the dead-letter copy of ``message_id``; CheckFailed after the timeout."""
        try:
            async with asyncio.timeout(self.timeout_s), self._arrived:
                await self._arrived.wait_for(lambda: message_id in self._dead)
        except TimeoutError:
            dead = self.broker.topology.dead_letter_queue(self.command_queue)
            raise CheckFailed(
                f"{what} was not copied to {dead} within {self.timeout_s:g}s"
            ) from None
        return self._dead[message_id]
