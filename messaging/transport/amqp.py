"""The one home of AMQP plumbing: connect, declare, publish with confirms, consume, dead-letter.

Both the orchestrator and the participants use it, so neither carries its own copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import replace
from typing import Any, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
)

from contracts import envelope as env
from contracts.pan import mask_pans
from contracts.topology import Topology
from messaging.transport.amqp_wire import dead_letter_context, properties_of, wire_of
from messaging.transport.coalesce import coalesce_frame_writes
from messaging.transport.codec import Wire
from messaging.transport.consumers import Consumer, Consumers, Handler
from messaging.transport.dead_marks import DeadLetterMarks
from messaging.transport.decoding import tolerate_undecodable
from messaging.transport.failover import first_connection
from messaging.transport.port import Delivery
from messaging.trust.sealing import Sealer

__all__ = ["DECLARE_HINT", "NOT_FOUND", "REQUEUE_DELAY_S", "Broker", "Handler"]
__all__ += ["dead_letter_context", "wire_of"]  # from amqp_wire, importable here too

log = structlog.get_logger(__name__)

# What a passive declaration of a missing queue or exchange raises.
NOT_FOUND = aiormq.exceptions.ChannelNotFoundEntity
DECLARE_HINT = (
    "run `baton declare` with the administrative broker user"
    " (or load deploy/rabbitmq/definitions.json)"
)
REQUEUE_DELAY_S = 0.5  # before a message that could not be dead-lettered goes back
NACKS_BEFORE_NEW_CHANNEL = 3  # publishes nacked in a row before the publisher channel is renewed


async def _requeue(message: Delivery) -> None:
    """Hand a message back to its queue after a pause, so a failing dependency is not spun on."""
    await asyncio.sleep(REQUEUE_DELAY_S)
    with suppress(Exception):  # a dead channel redelivers the message by itself
        await message.nack(requeue=True)


class Broker:
    """A robust connection with one confirming publisher channel and one channel per consumer.

    aio-pika's robust connection reconnects by itself and re-declares, on its robust
    channels, everything declared through them; consumers are restored the same way.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publisher: AbstractChannel,
        topology: Topology,
        *,
        prefetch: int,
        queue_type: str,
        delivery_limit: int = 0,
        dead_marks: DeadLetterMarks | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._connection = connection
        self._publisher = publisher
        self._nacks = 0  # publishes nacked in a row (see _nacked)
        self._exchanges: dict[str, AbstractExchange] = {}
        self._consumers = Consumers(self._start_consumer, self._wait_for_queue)
        self.topology = topology
        self._prefetch = prefetch
        self._queue_type = queue_type
        self._delivery_limit = delivery_limit
        # Without marks (tools, tests without Redis) a redelivered dead letter is copied again.
        self.dead_marks = dead_marks
        # With a sealer a dead letter's body is copied encrypted: it may carry a card token.
        self.sealer = sealer

    @classmethod
    async def connect(
        cls,
        url: str,
        topology: Topology,
        *,
        prefetch: int = 64,
        queue_type: str = "classic",
        delivery_limit: int = 0,
        wait_s: float = 0.0,
        dead_marks: DeadLetterMarks | None = None,
        sealer: Sealer | None = None,
    ) -> Broker:
        """Connect; a long-running process passes ``wait_s`` to outlast a broker restart.

        Once connected, aio-pika's robust connection reconnects by itself; only the first
        connection needs this patience. ``dead_marks`` keeps a redelivered dead letter
        from being copied twice; ``sealer`` encrypts the bodies of dead-letter copies.
        """
        coalesce_frame_writes()
        tolerate_undecodable()  # no message's bytes may break the connection's frame reader
        connection = await first_connection(url, wait_s)
        publisher = await connection.channel(publisher_confirms=True)
        return cls(
            connection, publisher, topology,
            prefetch=prefetch, queue_type=queue_type, delivery_limit=delivery_limit,
            dead_marks=dead_marks, sealer=sealer,
        )  # fmt: skip

    async def close(self) -> None:
        """Close everything; messages still unacked go back to their queues."""
        with suppress(Exception):
            await self._connection.close()

    @property
    def connection(self) -> AbstractRobustConnection:
        return self._connection

    @property
    def is_connected(self) -> bool:
        return not self._connection.is_closed

    # -- declaring -------------------------------------------------------------------------

    def _queue_arguments(self, queue: str) -> dict[str, Any]:
        return self.topology.work_queue_arguments(queue, self._queue_type, self._delivery_limit)

    async def _exchange(self, name: str, kind: aio_pika.ExchangeType) -> AbstractExchange:
        if name not in self._exchanges:
            self._exchanges[name] = await self._publisher.declare_exchange(name, kind, durable=True)
        return self._exchanges[name]

    async def _queue(self, name: str, exchange: AbstractExchange | None, routing_key: str) -> None:
        """Declare ``name`` and its dead-letter queue; bind it unless fed by queue name."""
        dlx = await self._exchange(self.topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT)
        dead = self.topology.dead_letter_queue(name)
        dead_queue = await self._publisher.declare_queue(
            dead, durable=True, arguments={"x-queue-type": self._queue_type}
        )
        await dead_queue.bind(dlx, dead)
        queue = await self._publisher.declare_queue(
            name, durable=True, arguments=self._queue_arguments(name)
        )
        if exchange is not None:
            await queue.bind(exchange, routing_key)

    async def declare(self, participants: Iterable[str] = ()) -> None:
        """Declare the whole topology (idempotent): exchanges, queues, dead-letter queues.

        Needs a broker user with configure rights (``baton declare``'s administrative
        user); the running services only check that the topology exists (``wait_for``).
        """
        t = self.topology
        commands = await self._exchange(t.commands_exchange, aio_pika.ExchangeType.DIRECT)
        replies = await self._exchange(t.replies_exchange, aio_pika.ExchangeType.DIRECT)
        starts = await self._exchange(t.start_exchange, aio_pika.ExchangeType.DIRECT)
        await self._exchange(t.events_exchange, aio_pika.ExchangeType.TOPIC)
        await self._queue(t.replies_queue, replies, t.replies_queue)
        # fed by queue name through the default exchange too (admin tools, older callers)
        await self._queue(t.start_queue, starts, t.start_queue)
        for name in participants:
            await self._queue(t.command_queue(name), commands, t.command_routing_key(name))

    async def missing(self, queues: Iterable[str], exchanges: Iterable[str] = ()) -> list[str]:
        """The named queues and exchanges that do not exist, checked passively.

        A passive declaration needs no permission, so the least-privileged user of a
        running service can ask. Each check gets its own short-lived channel: a missing
        object closes the channel it was asked on.
        """
        absent: list[str] = []
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                if not await self._exists(kind, name):
                    absent.append(f"{kind} {name}")
        return absent

    async def _exists(self, kind: str, name: str) -> bool:
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
            if kind == "queue":
                await underlay.queue_declare(name, passive=True)
            else:
                await underlay.exchange_declare(name, passive=True)
        except NOT_FOUND:
            return False
        finally:
            with suppress(Exception):
                await channel.close()
        return True

    async def wait_for(
        self,
        queues: Iterable[str],
        exchanges: Iterable[str],
        stop: asyncio.Event,
        *,
        retry_s: float = 2.0,
    ) -> bool:
        """Wait until every named queue and exchange exists; False if ``stop`` came first.

        The running services never declare: the topology is ``baton declare``'s (or the
        broker's definitions file's). Until it is there, say so, and what to run.
        """
        queues, exchanges = list(queues), list(exchanges)
        delay = retry_s
        while not stop.is_set():
            try:
                absent = await self.missing(queues, exchanges)
            except Exception as exc:  # the connection dropped: the robust one comes back
                log.warning("topology_check_failed", error=str(exc) or type(exc).__name__)
            else:
                if not absent:
                    return True
                log.warning("topology_missing", missing=absent, hint=DECLARE_HINT, retry_in_s=delay)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
        return False

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, wire: Wire, *, exchange: str, routing_key: str) -> None:
        """Publish persistently and wait for the broker's confirm (raises if nacked).

        Straight on the underlying aiormq channel: aio-pika's ``Exchange.publish`` builds a
        ``Message`` per call and waits, holding the channel lock, for each frame to reach
        the socket before the next publisher may queue its own, so concurrent publishes
        took a loop turn each. Here only the confirm is awaited (it comes after the frame
        was sent, so it is the backpressure); the lock is held just to number the message.
        """
        if self._publisher.is_closed:  # fail fast: the outbox keeps the message meanwhile
            raise aiormq.exceptions.ChannelInvalidStateError("publisher channel closed")
        # the concrete channel: the abstract one does not declare ``wait``
        channel = cast(aiormq.Channel, await self._publisher.get_underlay_channel())
        try:
            await channel.basic_publish(
                wire.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties_of(wire),
                wait=False,
            )
        except aiormq.exceptions.DeliveryError:
            await self._nacked(channel)
            raise
        self._nacks = 0  # the caller retries a nacked message (outbox, requeue)

    async def _nacked(self, channel: aiormq.Channel) -> None:
        """After a few nacks in a row, renew the publisher's channel (it reopens itself): a 3.10
        cluster channel was seen nacking every publish for ~50 s after a leader change."""
        self._nacks += 1
        if self._nacks >= NACKS_BEFORE_NEW_CHANNEL:
            self._nacks = 0
            log.warning("publisher_channel_renewed", after_nacks=NACKS_BEFORE_NEW_CHANNEL)
            with suppress(Exception):
                await channel.close()

    async def publish_many(self, items: Iterable[tuple[Wire, str, str]]) -> None:
        """Publish several messages and wait for all confirms together."""
        publishes = [self.publish(wire, exchange=ex, routing_key=rk) for wire, ex, rk in items]
        if len(publishes) == 1:
            await publishes[0]  # most transitions send one message: no task for it
        else:
            await asyncio.gather(*publishes)

    async def dead_letter(self, message: Delivery, queue: str, reason: str) -> None:
        """Copy ``message`` to ``queue``'s dead-letter queue with the reason, then ack it.

        A redelivery of a message already copied (its ack was lost to a broker restart) is
        acked without a second copy, when the broker has dead-letter marks to tell. When the
        copy cannot be published (the broker is going away), or the marks cannot be read, the
        original goes back to its queue, to be judged again and dead-lettered with its reason
        later: rejecting it would keep it too, but without the reason.

        With a sealer the copy's body is sealed whole (a malformed body cannot be searched
        for fields), bound to ``queue``, and marked with ``H_SEALED``; the reason has any
        card number masked. ``baton dlq replay`` opens it before republishing.
        """
        original = wire_of(message)
        try:
            # Not only for deliveries flagged ``redelivered``: after a broker restart RabbitMQ
            # delivers the unacked messages of a classic queue again without the flag.
            copied = await self._copied(queue, original)
        except Exception:
            log.warning("dead_letter_marks_unreachable", queue=queue, exc_info=True)
            await _requeue(message)
            return
        if copied:
            log.info("dead_letter_already_copied", queue=queue, message_id=original.message_id)
            await message.ack()
            return
        if not await self._copy(self._sealed(original, queue), queue, mask_pans(reason)):
            await _requeue(message)
            return
        await self._remember(queue, original)
        await message.ack()

    def _sealed(self, wire: Wire, queue: str) -> Wire:
        """The body as the dead-letter queue keeps it: sealed when the broker can seal."""
        if self.sealer is None:
            return wire
        body = self.sealer.seal(wire.body, dead_letter_context(queue)).encode()
        headers = {**wire.headers, env.H_SEALED: self.sealer.active_key_id}
        return replace(wire, body=body, headers=headers)

    async def _copied(self, queue: str, wire: Wire) -> bool:
        return self.dead_marks is not None and await self.dead_marks.copied(queue, wire)

    async def _copy(self, original: Wire, queue: str, reason: str) -> bool:
        """Publish the copy with its reason headers; False (logged) if it was not confirmed."""
        reasons = {env.H_REASON: reason[:500], env.H_SOURCE_QUEUE: queue}
        wire = replace(original, headers={**original.headers, **reasons})
        try:
            await self.publish(
                wire,
                exchange=self.topology.dead_letter_exchange,
                routing_key=self.topology.dead_letter_queue(queue),
            )
        except Exception:
            log.exception("dead_letter_publish_failed", queue=queue, reason=reason)
            return False
        return True

    async def _remember(self, queue: str, wire: Wire) -> None:
        """Mark the message copied. A failure only risks a second copy, never a loss."""
        if self.dead_marks is None:
            return
        try:
            await self.dead_marks.remember(queue, wire)
        except Exception:
            log.warning("dead_letter_mark_failed", queue=queue, exc_info=True)

    # -- consuming -------------------------------------------------------------------------

    async def consume(self, queue: str, handler: Handler, *, prefetch: int | None = None) -> None:
        """Start consuming ``queue`` on its own channel; ``handler`` must ack or reject.
        A consumer the broker cancels (queue deleted) resumes once the queue is back."""
        await self._consumers.add(await self._start_consumer(queue, handler, prefetch))

    async def _start_consumer(self, queue: str, handler: Handler, prefetch: int | None) -> Consumer:
        prefetch = prefetch or self._prefetch
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=prefetch)
            declared = await channel.declare_queue(queue, passive=True)  # never creates it
            tag = await declared.consume(handler, no_ack=False)
        except BaseException:  # missing queue, refused permission: no channel left behind
            with suppress(Exception):
                await channel.close()
            raise
        return Consumer(queue, handler, prefetch, channel, declared, tag)

    async def _wait_for_queue(self, queue: str, stop: asyncio.Event) -> bool:
        return await self.wait_for([queue], [], stop)

    def not_consuming(self) -> list[str]:
        """Why each consumer the broker cancelled (its queue deleted) has not resumed yet."""
        return self._consumers.not_consuming()

    async def stop_consuming(self) -> None:
        """Cancel the consumers: no new deliveries; in-flight ones can still be acked."""
        await self._consumers.stop()

    async def queue_depth(self, queue: str) -> int:
        """Ready messages in ``queue``, asked afresh (a robust channel caches declarations)."""
        return (await self._inspect(queue))[0]

    async def consumer_count(self, queue: str) -> int:
        return (await self._inspect(queue))[1]

    async def _inspect(self, queue: str) -> tuple[int, int]:
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            declared = await channel.declare_queue(queue, passive=True)
            result = declared.declaration_result
            return result.message_count or 0, result.consumer_count or 0
        finally:
            await channel.close()

    async def delete(self, queues: Iterable[str], exchanges: Iterable[str] = ()) -> None:
        """Delete queues and exchanges (test and demo clean-up); missing ones are fine."""
        for name in queues:
            with suppress(Exception):
                await self._publisher.queue_delete(name)
        for name in exchanges:
            with suppress(Exception):
                await self._publisher.exchange_delete(name)
