"""The transport port: what the orchestrator runner and the participant worker use of a broker.

``messaging.transport.amqp.Broker`` (RabbitMQ) and ``messaging.transport.stub_broker.StubBroker``
(in memory) both satisfy it structurally, so the same runtime code runs over either.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from contracts.topology import Topology
from messaging.transport.codec import Wire

__all__ = ["Delivery", "DeliveryHandler", "Transport"]


class Delivery(Protocol):
    """One delivery as a handler reads and settles it (aio-pika's incoming message, or the
    stub's): the properties ``wire_of`` turns into a ``Wire``, and ack / nack."""

    @property
    def body(self) -> bytes: ...
    @property
    def type(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, Any]: ...  # AMQP field values: any of a dozen types
    @property
    def processed(self) -> bool: ...  # acked, nacked or rejected already

    async def ack(self, multiple: bool = False) -> None: ...
    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


# ``async def`` handlers; the coroutine's send and yield types are the event loop's business.
DeliveryHandler = Callable[[Delivery], Coroutine[Any, Any, None]]


class Transport(Protocol):
    """Publish with confirms, consume with manual settling, dead-letter with a reason."""

    @property
    def topology(self) -> Topology: ...

    async def publish(self, wire: Wire, *, exchange: str, routing_key: str) -> None: ...

    async def publish_many(self, items: Iterable[tuple[Wire, str, str]]) -> None: ...

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int | None = None
    ) -> None: ...

    async def dead_letter(self, message: Delivery, queue: str, reason: str) -> None: ...

    async def stop_consuming(self) -> None: ...
