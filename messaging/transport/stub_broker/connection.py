"""One client connection to the stub broker's server: the methods of
``messaging.transport.amqp.Broker``."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterable
from dataclasses import replace
from typing import Self

import structlog

from contracts import envelope as env
from contracts.topology import Topology
from messaging.transport.codec import Wire
from messaging.transport.dead_marks import DeadLetterMarks
from messaging.transport.port import Delivery
from messaging.transport.stub_broker.server import (
    DIRECT,
    TOPIC,
    AlreadySettled,
    BrokerFaults,
    BrokerUnavailable,
    Consumer,
    Handler,
    NoFaults,
    Queue,
    Server,
    StubMessage,
)

log = structlog.get_logger(__name__)

REQUEUE_DELAY_S = 0.5  # as the real broker: before a message that could not be dead-lettered


class StubBroker:
    """One connection to an in-memory RabbitMQ; the methods Baton's processes use."""

    def __init__(
        self,
        topology: Topology,
        *,
        prefetch: int = 64,
        faults: BrokerFaults | None = None,
        dead_marks: DeadLetterMarks | None = None,
        name: str = "main",
        server: Server | None = None,
    ) -> None:
        self.topology = topology
        self.name = name
        self.server = server or Server(faults or NoFaults())
        self.server.connections.append(self)
        self.dead_marks = dead_marks
        self._prefetch = prefetch
        self.consumers: list[Consumer] = []
        self._deliveries: dict[int, StubMessage] = {}  # unsettled, by delivery tag
        self._tasks: dict[asyncio.Task[None], None] = {}  # running handlers (an ordered set)
        self.epoch = 0  # bumped each time the connection dies: older deliveries are void
        self.closed = False
        self._dropped = False
        self.handler_errors: list[BaseException] = []

    def connect(
        self, name: str, *, dead_marks: DeadLetterMarks | None = None, prefetch: int | None = None
    ) -> Self:
        """Another connection to the same server (another process), of the same class."""
        return type(self)(
            self.topology, prefetch=prefetch or self._prefetch, dead_marks=dead_marks,
            name=name, server=self.server,
        )  # fmt: skip

    @property
    def is_connected(self) -> bool:
        return self.server.up and not (self.closed or self._dropped)

    def _check(self) -> None:
        if not self.is_connected:
            raise BrokerUnavailable(f"connection {self.name} is not open")

    # -- failures ---------------------------------------------------------------------------

    def drop(self, reconnect_after_s: float | None = None) -> None:
        """The connection dies: its deliveries go back (redelivered), its handler tasks are
        cancelled (aiormq cancels a closed channel's consumer tasks). A robust connection
        comes back after ``reconnect_after_s`` with its consumers; None: never (a crash)."""
        self._lose()
        if reconnect_after_s is None:
            self.closed = True
            self._cancel_consumers()
            if self in self.server.connections:
                self.server.connections.remove(self)
            return
        self._dropped = True
        asyncio.get_running_loop().call_later(reconnect_after_s, self._reconnect)

    def _reconnect(self) -> None:
        if self.closed:
            return
        self._dropped = False
        self.server.kick_all()

    def _lose(self) -> None:
        self.epoch += 1
        deliveries, self._deliveries = self._deliveries, {}
        for message in reversed(deliveries.values()):  # requeued at the front: keep the order
            self.server.settled(message.consumer, (message.stored, "requeue"))
        for task in list(self._tasks):
            task.cancel()

    def server_down(self) -> None:
        """A broker outage: every connection dies; publishes fail until ``server_up``."""
        for connection in list(self.server.connections):
            if not connection.closed:
                connection._lose()
        self.server.up = False
        self.server.notify()

    def server_up(self) -> None:
        self.server.up = True
        self.server.kick_all()
        self.server.notify()

    # -- delivering (called by the server) ---------------------------------------------------

    def deliver(self, message: StubMessage, consumer: Consumer, latency: float) -> None:
        self._deliveries[message.delivery_tag] = message
        loop = asyncio.get_running_loop()
        if latency > 0:
            loop.call_later(latency, self._start, message, consumer)
        else:
            self._start(message, consumer)

    def _start(self, message: StubMessage, consumer: Consumer) -> None:
        if not message.live or message.delivery_tag not in self._deliveries:
            return  # the connection died on the way; the server already took it back
        loop = asyncio.get_running_loop()
        task = loop.create_task(consumer.handler(message), context=consumer.context.copy())
        self._tasks[task] = None
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            assert error is not None
            self.handler_errors.append(error)
            log.error("consumer_callback_failed", connection=self.name, error=repr(error))
        self.server.notify()

    def forget(self, message: StubMessage) -> None:
        self._deliveries.pop(message.delivery_tag, None)

    # -- the Broker interface -------------------------------------------------------------------

    async def close(self) -> None:
        """Close everything; messages still unacked go back to their queues."""
        if not self.closed:
            self.drop(None)

    def _declare_queue(self, name: str, dead_exchange: str | None, dead_key: str | None) -> None:
        if name not in self.server.queues:
            self.server.queues[name] = Queue(name, dead_exchange, dead_key)

    def _bind(self, exchange: str, key: str, queue: str) -> None:
        bound = self.server.bindings.setdefault(exchange, [])
        if (key, queue) not in bound:
            bound.append((key, queue))

    def _queue(self, name: str, exchange: str | None, routing_key: str) -> None:
        t = self.topology
        dead = t.dead_letter_queue(name)
        self._declare_queue(dead, None, None)
        self._bind(t.dead_letter_exchange, dead, dead)
        self._declare_queue(name, t.dead_letter_exchange, dead)
        if exchange is not None:
            self._bind(exchange, routing_key, name)

    async def declare(self, participants: Iterable[str] = ()) -> None:
        """Declare the whole topology (idempotent), as ``Broker.declare`` does."""
        self._check()
        t = self.topology
        starts = getattr(t, "start_exchange", None)  # newer topologies feed starts by exchange
        kinds = {t.commands_exchange: DIRECT, t.replies_exchange: DIRECT,
                 t.events_exchange: TOPIC, t.dead_letter_exchange: DIRECT}  # fmt: skip
        if starts:
            kinds[starts] = DIRECT
        for name, kind in kinds.items():
            self.server.exchanges.setdefault(name, kind)
        self._queue(t.replies_queue, t.replies_exchange, t.replies_queue)
        self._queue(t.start_queue, starts, t.start_queue)  # and by name (default exchange)
        for name in participants:
            self._queue(t.command_queue(name), t.commands_exchange, t.command_routing_key(name))

    async def missing(self, queues: Iterable[str], exchanges: Iterable[str] = ()) -> list[str]:
        """The named queues and exchanges that do not exist (``Broker.missing``)."""
        self._check()
        absent = [f"queue {q}" for q in queues if q not in self.server.queues]
        return absent + [f"exchange {e}" for e in exchanges if e not in self.server.exchanges]

    async def wait_for(
        self,
        queues: Iterable[str],
        exchanges: Iterable[str],
        stop: asyncio.Event,
        *,
        retry_s: float = 2.0,
    ) -> bool:
        """Wait until every named queue and exchange exists; False if ``stop`` came first."""
        queues, exchanges = list(queues), list(exchanges)
        while not stop.is_set():
            try:
                if not await self.missing(queues, exchanges):
                    return True
            except BrokerUnavailable:
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_s)
        return False

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        """Declare ``queue`` (no dead-letter exchange) bound to ``exchange`` (observers)."""
        self._declare_queue(queue, None, None)
        self._bind(exchange, routing_key, queue)

    async def publish(self, wire: Wire, *, exchange: str, routing_key: str) -> None:
        """Route now; return once the confirm arrives. A connection that dies meanwhile
        raises, though the message was routed: the publisher cannot tell (as with AMQP)."""
        self._check()
        epoch = self.epoch
        self.server.publish(wire, exchange, routing_key)
        latency = self.server.faults.latency()
        if latency > 0:
            await asyncio.sleep(latency)
        if self.epoch != epoch or not self.is_connected:
            raise BrokerUnavailable("connection lost before the confirm")

    async def publish_many(self, items: Iterable[tuple[Wire, str, str]]) -> None:
        """Publish several messages and wait for all confirms together."""
        await asyncio.gather(*(self.publish(w, exchange=ex, routing_key=rk) for w, ex, rk in items))

    async def dead_letter(self, message: Delivery, queue: str, reason: str) -> None:
        """Copy ``message`` to ``queue``'s dead-letter queue with the reason, then ack it.

        The same rules as ``Broker.dead_letter``: a redelivery already copied (per the
        marks) is only acked; a copy or marks lookup that fails sends the original back to
        its queue after a pause.
        """
        original = _wire_of(message)
        try:
            copied = self.dead_marks is not None and (await self.dead_marks.copied(queue, original))
        except Exception:
            await self._requeue(message)
            return
        if not copied:
            reasons = {env.H_REASON: reason[:500], env.H_SOURCE_QUEUE: queue}
            wire = replace(original, headers={**original.headers, **reasons})
            t = self.topology
            try:
                await self.publish(
                    wire, exchange=t.dead_letter_exchange, routing_key=t.dead_letter_queue(queue)
                )
            except Exception:
                await self._requeue(message)
                return
            if self.dead_marks is not None:
                try:
                    await self.dead_marks.remember(queue, original)
                except Exception:
                    log.warning("dead_letter_mark_failed", queue=queue)
        await message.ack()

    @staticmethod
    async def _requeue(message: Delivery) -> None:
        await asyncio.sleep(REQUEUE_DELAY_S)
        with contextlib.suppress(BrokerUnavailable, AlreadySettled):  # a dead channel does it
            await message.nack(requeue=True)

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
    ) -> None:
        """Consume ``queue`` (which must exist); ``handler`` runs in the caller's context."""
        self._check()
        found = self.server.queues.get(queue)
        if found is None:
            raise BrokerUnavailable(f"NOT_FOUND - no queue {queue!r}")
        consumer = Consumer(found, handler, prefetch or self._prefetch, self,
                             contextvars.copy_context())  # fmt: skip
        found.consumers.append(consumer)
        self.consumers.append(consumer)
        self.server.plan_dispatch(found)

    async def stop_consuming(self) -> None:
        """Cancel the consumers: no new deliveries; in-flight ones can still be acked."""
        self._cancel_consumers()

    def _cancel_consumers(self) -> None:
        for consumer in self.consumers:
            consumer.cancelled = True
            if consumer in consumer.queue.consumers:
                consumer.queue.consumers.remove(consumer)
        self.consumers.clear()

    async def queue_depth(self, queue: str) -> int:
        self._check()
        found = self.server.queues.get(queue)
        if found is None:
            raise BrokerUnavailable(f"NOT_FOUND - no queue {queue!r}")
        return len(found.ready)

    async def consumer_count(self, queue: str) -> int:
        self._check()
        found = self.server.queues.get(queue)
        if found is None:
            return 0
        return sum(1 for c in found.consumers if not c.cancelled and c.connection.is_connected)

    async def delete(self, queues: Iterable[str], exchanges: Iterable[str] = ()) -> None:
        for name in queues:
            self.server.queues.pop(name, None)
        for name in exchanges:
            self.server.exchanges.pop(name, None)
            self.server.bindings.pop(name, None)

    # -- for tests and simulations ----------------------------------------------------------------

    def messages(self, queue: str) -> list[Wire]:
        """The ready messages of ``queue``, oldest first (not consumed)."""
        found = self.server.queues.get(queue)
        return [] if found is None else [s.wire for s in found.ready]

    def take(self, queue: str) -> list[Wire]:
        """Remove and return the ready messages of ``queue`` (a dead-letter queue, say)."""
        found = self.server.queues.get(queue)
        if found is None:
            return []
        taken = [s.wire for s in found.ready]
        found.ready.clear()
        self.server.notify()
        return taken

    def drained(self, queues: Iterable[str]) -> bool:
        found = (self.server.queues.get(q) for q in queues)
        return all(q is None or q.drained for q in found)

    async def join(self, queue: str, timeout_s: float | None = None) -> None:
        """Wait until ``queue`` is empty, nothing of it is unacked or in transit, and every
        handler of this server has returned (raises TimeoutError after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while not (self.drained([queue]) and not self._handlers_running()):
                await self.server.changed.wait()

    def _handlers_running(self) -> bool:
        return any(connection._tasks for connection in self.server.connections)


def _wire_of(message: Delivery) -> Wire:
    return Wire(
        body=message.body,
        kind=message.type,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        reply_to=message.reply_to,
        headers=dict(message.headers),
    )
