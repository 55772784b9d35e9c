"""A robust AMQP connection over every node of a cluster: each attempt goes to the next node.

aio-pika's robust connection reconnects to the one URL it was given, so with a cluster it
would wait for the node it lost instead of using the two that are up. ``BATON_RABBIT__URL``
lists the nodes (``amqp://user:pass@n1:5672,n2:5672,n3:5672/vhost``); the first connection
tries them in turn from a random one (so replicas spread over the nodes), and every
reconnection moves on to the next. Quorum queues live on all nodes, so any node serves.

aio-pika 10.2.1 (pinned for the frame-coalescing patch) makes each attempt in
``RobustConnection.__connect_transport``; this class moves the URL on just before it.
``check_failover_hook`` refuses an aio-pika without that method rather than fail silently.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import aio_pika
import structlog
from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustConnection
from pydantic_core import MultiHostUrl
from yarl import URL

_ATTEMPT = "_RobustConnection__connect_transport"  # the private method each attempt runs
log = structlog.get_logger("messaging.transport.amqp")
RECONNECT_INTERVAL_S = 1.0  # between attempts; the next one goes to another node


def node_urls(url: str) -> list[str]:
    """One single-host URL per node of ``url`` (credentials, vhost and query kept)."""
    parsed = MultiHostUrl(url)
    hosts = parsed.hosts()
    if len(hosts) == 1:
        return [url]
    first = hosts[0]  # credentials are written once, on the first host
    path, query = parsed.path or "/", f"?{parsed.query}" if parsed.query else ""
    urls = []
    for host in hosts:
        built = URL.build(
            scheme=parsed.scheme,
            user=first["username"],
            password=first["password"],
            host=host["host"] or "127.0.0.1",
            port=host["port"],
            encoded=True,
        )
        urls.append(f"{built}{path}{query}")
    return urls


def check_failover_hook() -> None:
    """Raise if this aio-pika does not make its attempts where ``FailoverConnection`` hooks."""
    if not callable(getattr(RobustConnection, _ATTEMPT, None)):
        raise TypeError(
            "aio-pika's RobustConnection has no per-attempt connect method: "
            "multi-node BATON_RABBIT__URL failover needs the pinned aio-pika"
        )


class FailoverConnection(RobustConnection):
    """A ``RobustConnection`` whose every connection attempt goes to the next node."""

    nodes: tuple[URL, ...] = ()
    _turn = 0

    async def _RobustConnection__connect_transport(self) -> None:  # noqa: N802 (aio-pika's name)
        if self.nodes:
            self.url = self.nodes[self._turn % len(self.nodes)]
            self._turn += 1
        attempt: Any = getattr(RobustConnection, _ATTEMPT)
        await attempt(self)


def first_node() -> int:
    """Where a process starts its round of the nodes: anywhere, so replicas spread out."""
    return random.randrange(1 << 16)


def failover_class(urls: list[str], start: int) -> type[FailoverConnection]:
    """A connection class bound to ``urls``, making its first attempt at ``urls[start]``.

    aio-pika builds the connection itself (``connect_robust(connection_class=...)``), so the
    nodes travel on a subclass made for this one connection.
    """
    start %= len(urls)
    nodes = tuple(URL(u) for u in urls[start:] + urls[:start])
    check_failover_hook()
    return type("BoundFailoverConnection", (FailoverConnection,), {"nodes": nodes})


async def first_connection(url: str, wait_s: float) -> AbstractRobustConnection:
    """Connect to one of ``url``'s nodes, each attempt at the next; later reconnections too."""
    loop = asyncio.get_running_loop()
    give_up_at, delay = loop.time() + wait_s, 0.5
    urls, start = node_urls(url), first_node()
    for attempt in itertools.count(start):
        node = urls[attempt % len(urls)]
        try:
            return await aio_pika.connect_robust(
                node,
                client_properties={"product": "baton"},
                connection_class=failover_class(urls, attempt),
                reconnect_interval=RECONNECT_INTERVAL_S,
            )
        except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
            if len(urls) > 1 and attempt - start < len(urls) - 1:
                continue  # another node first; the pause is for when all of them failed
            if loop.time() + delay > give_up_at:
                raise
            reason = str(exc) or type(exc).__name__
            log.warning("rabbitmq_unreachable", error=reason, retry_in_s=delay)
            await asyncio.sleep(delay)  # backing off before the next attempt, not settling
            delay = min(delay * 2, 5.0)
            start = attempt + 1  # a whole new round of the nodes after the pause
    raise AssertionError("unreachable")  # itertools.count never ends
