"""An in-memory RabbitMQ with the interface of ``messaging.transport.amqp.Broker`` (style.md 6.1).

It routes as RabbitMQ does for Baton's topology (direct exchanges by routing key, the
default exchange by queue name, topic exchanges by pattern, a queue's dead-letter exchange
on ``reject(requeue=False)`` and on expiry), keeps unacked deliveries per connection with a
per-consumer prefetch, hands them back (``redelivered``) when a connection dies, and drops
or dead-letters a message whose ``Wire.expiration_ms`` passed before it was delivered.

One ``StubBroker`` is one client connection; ``connect`` opens another to the same
in-memory server, so each simulated process has its own and its death requeues only its
deliveries. Failures are injected through ``BrokerFaults`` (lose, duplicate, delay a copy;
latency of deliveries and confirms) and by taking the server or one connection down: the
same knobs the deterministic simulation turns with its seeded RNG. Time is the running
loop's, so under a virtual-time loop expirations and latencies are virtual too.
"""

from messaging.transport.stub_broker.connection import StubBroker
from messaging.transport.stub_broker.server import (
    AlreadySettled,
    BrokerFaults,
    BrokerUnavailable,
    Handler,
    NoFaults,
    StubMessage,
)

__all__ = [
    "AlreadySettled",
    "BrokerFaults",
    "BrokerUnavailable",
    "Handler",
    "NoFaults",
    "StubBroker",
    "StubMessage",
]
