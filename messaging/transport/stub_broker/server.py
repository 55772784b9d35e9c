"""The stub broker's server: exchanges, bindings, queues, routing and dispatch.

Shared by every connection (``connection.StubBroker``); it knows consumers only through
the connection they came on, which it asks whether it is up and hands each delivery to.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from messaging.transport.codec import Wire

if TYPE_CHECKING:
    from messaging.transport.stub_broker.connection import StubBroker

H_DEATH_REASON = "x-first-death-reason"  # RabbitMQ's header on a dead-lettered message
DIRECT, TOPIC = "direct", "topic"
Handler = Callable[["StubMessage"], Coroutine[Any, Any, None]]


class BrokerUnavailable(ConnectionError):
    """The server is down or this connection is closed: nothing was published or settled."""


class AlreadySettled(RuntimeError):
    """A delivery was acked, nacked or rejected twice (aio-pika raises the same)."""


class BrokerFaults(Protocol):
    """The knobs a simulation turns; every answer may come from its seeded RNG."""

    def copies(self, queue: str, wire: Wire) -> Sequence[float]:
        """Delays (s) of each copy routed to ``queue``: () loses it, two duplicate it."""
        ...

    def latency(self) -> float:
        """Seconds a delivery takes to reach its consumer, or a confirm its publisher."""
        ...

    def choose(self, count: int) -> int:
        """Which of ``count`` consumers with room gets the next delivery."""
        ...


class NoFaults:
    """A perfect network: one copy, no latency, consumers served round-robin."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    def copies(self, queue: str, wire: Wire) -> Sequence[float]:
        return (0.0,)

    def latency(self) -> float:
        return 0.0

    def choose(self, count: int) -> int:
        return next(self._turn) % count


@dataclass(eq=False)
class Stored:
    """A message in a queue, with what routing and redelivery gave it."""

    wire: Wire
    exchange: str
    routing_key: str
    expires_at: float | None
    redelivered: bool = False


@dataclass(eq=False)
class Queue:
    """Ready messages in order, counts of unsettled and delayed ones, and the consumers."""

    name: str
    dead_exchange: str | None = None
    dead_routing_key: str | None = None
    ready: deque[Stored] = field(default_factory=deque)
    unacked: int = 0
    in_transit: int = 0  # copies delayed by a fault, not yet enqueued
    consumers: list[Consumer] = field(default_factory=list)
    dispatch_planned: bool = False

    @property
    def drained(self) -> bool:
        return not (self.ready or self.unacked or self.in_transit)


@dataclass(eq=False)
class Consumer:
    """One ``consume`` call: its handler, its prefetch and the context its tasks run in."""

    queue: Queue
    handler: Handler
    prefetch: int
    connection: StubBroker
    context: contextvars.Context
    unacked: int = 0
    cancelled: bool = False

    @property
    def has_room(self) -> bool:
        return not self.cancelled and self.connection.is_connected and self.unacked < self.prefetch


class StubMessage:
    """A delivery, with the attributes and settle methods of aio-pika's incoming message."""

    def __init__(self, stored: Stored, consumer: Consumer, tag: int) -> None:
        wire = stored.wire
        self.body = wire.body
        self.type = wire.kind
        self.message_id = wire.message_id
        self.correlation_id = wire.correlation_id
        self.content_type = wire.content_type
        self.reply_to = wire.reply_to
        self.headers: dict[str, Any] = dict(wire.headers)
        ttl_ms = _expiration_ms(wire)
        self.expiration = None if ttl_ms is None else ttl_ms / 1000
        self.redelivered = stored.redelivered
        self.delivery_tag = tag
        self.exchange = stored.exchange
        self.routing_key = stored.routing_key
        self.stored = stored
        self.consumer = consumer
        self._epoch = consumer.connection.epoch
        self.settled = False

    @property
    def processed(self) -> bool:
        """Acked, nacked or rejected (aio-pika's name; the worker asks it after a crash)."""
        return self.settled

    @property
    def live(self) -> bool:
        """Still settleable: not settled, and its connection has not died since delivery."""
        connection = self.consumer.connection
        return not self.settled and connection.is_connected and connection.epoch == self._epoch

    def _settle(self) -> Consumer:
        if self.settled:
            raise AlreadySettled(f"delivery {self.delivery_tag} already settled")
        if not self.live:
            raise BrokerUnavailable("channel closed: the delivery goes back to its queue")
        self.settled = True
        self.consumer.connection.forget(self)
        return self.consumer

    async def ack(self, multiple: bool = False) -> None:
        self._settle().connection.server.settled(self.consumer, None)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        how = "requeue" if requeue else "rejected"
        self._settle().connection.server.settled(self.consumer, (self.stored, how))

    async def reject(self, requeue: bool = False) -> None:
        await self.nack(requeue=requeue)


class Server:
    """The broker's state: exchanges, bindings, queues; shared by every connection."""

    def __init__(self, faults: BrokerFaults) -> None:
        self.faults = faults
        self.up = True
        self.exchanges: dict[str, str] = {"": DIRECT}
        self.bindings: dict[str, list[tuple[str, str]]] = {}  # exchange -> (key, queue)
        self.queues: dict[str, Queue] = {}
        self.connections: list[StubBroker] = []
        self.tags = itertools.count(1)
        self.changed = asyncio.Event()
        # told of every message the server itself dead-letters or drops: (queue, wire, why)
        self.on_dead: Callable[[str, Wire, str], None] = lambda queue, wire, why: None

    # -- routing ----------------------------------------------------------------------------

    def route(self, exchange: str, routing_key: str) -> list[Queue]:
        kind = self.exchanges.get(exchange)
        if kind is None:
            raise BrokerUnavailable(f"NOT_FOUND - no exchange {exchange!r}")
        if exchange == "":
            found = self.queues.get(routing_key)
            return [found] if found else []
        names = [
            q for key, q in self.bindings.get(exchange, []) if _matches(kind, key, routing_key)
        ]
        return [self.queues[n] for n in dict.fromkeys(names) if n in self.queues]

    def publish(self, wire: Wire, exchange: str, routing_key: str) -> None:
        loop = asyncio.get_running_loop()
        ttl = _expiration_ms(wire)
        expires = None if ttl is None else loop.time() + ttl / 1000
        for queue in self.route(exchange, routing_key):
            for delay in self.faults.copies(queue.name, wire):
                stored = Stored(wire, exchange, routing_key, expires)
                if delay <= 0:
                    self.enqueue(queue, stored)
                else:
                    queue.in_transit += 1
                    loop.call_later(delay, self._arrive, queue, stored)
            self.notify()

    def _arrive(self, queue: Queue, stored: Stored) -> None:
        queue.in_transit -= 1
        if self.queues.get(queue.name) is queue:
            self.enqueue(queue, stored)
        self.notify()

    def enqueue(self, queue: Queue, stored: Stored, *, front: bool = False) -> None:
        if front:
            queue.ready.appendleft(stored)
        else:
            queue.ready.append(stored)
        self.plan_dispatch(queue)

    def dead_letter(self, queue: Queue, stored: Stored, reason: str) -> None:
        """RabbitMQ's own dead-lettering (rejected, expired): to the queue's DLX, if any."""
        self.on_dead(queue.name, stored.wire, reason)
        if queue.dead_exchange is None:
            return
        headers = {**stored.wire.headers, H_DEATH_REASON: reason}
        wire = replace(stored.wire, headers=headers)
        key = queue.dead_routing_key or stored.routing_key
        for target in self.route(queue.dead_exchange, key):  # the copy has no expiry left
            self.enqueue(target, Stored(wire, queue.dead_exchange, key, None))

    # -- delivering ---------------------------------------------------------------------------

    def plan_dispatch(self, queue: Queue) -> None:
        if not queue.dispatch_planned:
            queue.dispatch_planned = True
            asyncio.get_running_loop().call_soon(self._dispatch, queue)

    def _dispatch(self, queue: Queue) -> None:
        queue.dispatch_planned = False
        loop = asyncio.get_running_loop()
        while queue.ready and self.up:
            room = [c for c in queue.consumers if c.has_room]
            if not room:
                return
            stored = queue.ready.popleft()
            if stored.expires_at is not None and loop.time() >= stored.expires_at:
                self.dead_letter(queue, stored, "expired")
                continue
            consumer = room[self.faults.choose(len(room)) % len(room)]
            message = StubMessage(stored, consumer, next(self.tags))
            consumer.unacked += 1
            queue.unacked += 1
            consumer.connection.deliver(message, consumer, self.faults.latency())
        self.notify()

    def settled(self, consumer: Consumer, back: tuple[Stored, str] | None) -> None:
        """A delivery was acked (``back`` None), requeued or rejected; free its slot."""
        consumer.unacked -= 1
        queue = consumer.queue
        queue.unacked -= 1
        if back is not None:
            stored, how = back
            if how == "requeue":
                stored.redelivered = True
                self.enqueue(queue, stored, front=True)
            else:
                self.dead_letter(queue, stored, how)
        self.plan_dispatch(queue)
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits in ``join``: something about some queue changed."""
        self.changed.set()
        self.changed = asyncio.Event()

    def kick_all(self) -> None:
        for queue in self.queues.values():
            self.plan_dispatch(queue)


def _matches(kind: str, pattern: str, key: str) -> bool:
    if kind != TOPIC:
        return pattern == key
    return _topic(pattern.split("."), key.split("."))


def _topic(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_topic(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _topic(rest, words[1:])


def _expiration_ms(wire: Wire) -> int | None:
    """The message's AMQP expiration, for a ``Wire`` that carries one (optional field)."""
    value = getattr(wire, "expiration_ms", None)
    return value if isinstance(value, int) else None
