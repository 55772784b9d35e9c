"""The RabbitMQ side of the AsyncAPI document: the server and the AMQP 0-9-1 bindings.

Bindings are AsyncAPI's AMQP bindings 0.3.0. What they cannot say (queue arguments, which
exchange a queue is bound to, why a property is not set) goes in ``x-`` extensions, so the
document stays valid and still tells everything ``Broker.declare`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from contracts.topology import Topology
from messaging.transport.failover import node_urls

BINDING_VERSION = "0.3.0"
SECURITY_SCHEME = "userPassword"
SERVER = "rabbitmq"

QueueType = Literal["classic", "quorum"]
ExchangeType = Literal["direct", "topic", "default"]


@dataclass(frozen=True)
class BrokerInfo:
    """Where the broker is and how its queues are declared: the document's server.

    Never the credentials: the URL's user and password are dropped.
    """

    host: str = "127.0.0.1"
    port: int = 5672
    vhost: str = "/"
    queue_type: QueueType = "classic"

    @classmethod
    def from_url(cls, url: str, queue_type: QueueType = "classic") -> BrokerInfo:
        """From an ``amqp://user:password@host:port/vhost`` URL (settings.rabbit.url); of a
        cluster's URL, the first node names the server."""
        parts = urlsplit(node_urls(url)[0])
        path = parts.path.removeprefix("/")
        return cls(
            host=parts.hostname or cls.host,
            port=parts.port or cls.port,
            vhost=unquote(path) if path else "/",
            queue_type=queue_type,
        )


def servers(broker: BrokerInfo) -> dict[str, Any]:
    """One RabbitMQ server; host, port and virtual host are variables with these defaults."""
    return {
        SERVER: {
            "host": "{host}:{port}",
            "pathname": "/{vhost}",
            "protocol": "amqp",
            "protocolVersion": "0.9.1",
            "title": "RabbitMQ",
            "description": "Every service has a broker user of its own with the least "
            "permissions it needs (`baton access`); none of them declares anything "
            "(`baton declare` does, as the administrative user).",
            "variables": {
                "host": {"default": broker.host, "description": "The broker's host name."},
                "port": {"default": str(broker.port)},
                "vhost": {
                    "default": quote(broker.vhost, safe=""),
                    "description": "The virtual host, URL-encoded (`%2F` is `/`).",
                },
            },
            "security": [{"$ref": f"#/components/securitySchemes/{SECURITY_SCHEME}"}],
        }
    }


def security_schemes() -> dict[str, Any]:
    return {
        SECURITY_SCHEME: {
            "type": "userPassword",
            "description": "A RabbitMQ user and password (AMQP PLAIN), one user per service.",
        }
    }


def _exchange(name: str, kind: ExchangeType, broker: BrokerInfo) -> dict[str, Any]:
    if kind == "default":  # the nameless exchange every queue is bound to by its name
        return {"type": "default", "vhost": broker.vhost}
    return {"name": name, "type": kind, "durable": True, "autoDelete": False, "vhost": broker.vhost}


def queue_binding(
    queue: str,
    topology: Topology,
    broker: BrokerInfo,
    bound: tuple[str, ExchangeType, str] | None,
    *,
    dead: bool = False,
) -> dict[str, Any]:
    """A durable queue, its declaration arguments and the exchange it is bound to.

    A work queue has the dead-letter exchange (what the broker itself dead-letters lands in
    its dead-letter queue); a ``dead`` (dead-letter) queue has none.
    """
    arguments: dict[str, str] = {"x-queue-type": broker.queue_type}
    if not dead:
        arguments["x-dead-letter-exchange"] = topology.dead_letter_exchange
        arguments["x-dead-letter-routing-key"] = topology.dead_letter_queue(queue)
    binding: dict[str, Any] = {
        "is": "queue",
        "queue": {
            "name": queue,
            "durable": True,
            "exclusive": False,
            "autoDelete": False,
            "vhost": broker.vhost,
        },
        "x-arguments": arguments,
        "bindingVersion": BINDING_VERSION,
    }
    if bound is not None:
        exchange, kind, key = bound
        binding["x-bound-to"] = {"exchange": _exchange(exchange, kind, broker), "routingKey": key}
    return {"amqp": binding}


def routing_key_binding(exchange: str, kind: ExchangeType, broker: BrokerInfo) -> dict[str, Any]:
    """A channel whose address is a routing key on ``exchange``."""
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": _exchange(exchange, kind, broker),
            "bindingVersion": BINDING_VERSION,
        }
    }


_NO_EXPIRATION = (
    "not set: every work queue dead-letters what the broker drops, so RabbitMQ would move "
    "each expired message to a dead-letter queue, which must hold only what needs an "
    "operator; a command carries x-baton-deadline and a start x-baton-sent-at instead, "
    "checked by whoever takes it (docs/protocol.md, Expiry and Starts)"
)


def publish_binding(*, reply_to: str = "absent") -> dict[str, Any]:
    """How Baton publishes: persistent, with a publisher confirm, consumed with manual acks.

    ``mandatory`` is off: the topology is declared before anything runs and the publisher
    confirm is what a sender waits for.
    """
    return {
        "amqp": {
            "deliveryMode": 2,
            "mandatory": False,
            "ack": True,
            "timestamp": False,
            "x-expiration": _NO_EXPIRATION,
            "x-reply-to": reply_to,
            "x-publisher-confirms": True,
            "bindingVersion": BINDING_VERSION,
        }
    }


def message_binding(kind: str) -> dict[str, Any]:
    """The AMQP ``type`` property names the contract."""
    return {"amqp": {"messageType": kind, "bindingVersion": BINDING_VERSION}}
