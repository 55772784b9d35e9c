"""Dead letters copied once: a marker per message already copied to its dead-letter queue.

RabbitMQ redelivers a message whose ack it did not receive (the broker killed right after
it), and the redelivery is judged again and would be copied a second time. The marker lets
``Broker.dead_letter`` recognise such a redelivery. It is consulted for every delivery, not
only those flagged ``redelivered``: after a broker restart RabbitMQ delivers a classic
queue's unacked messages again without that flag (the flaky ``test_everything_mixed``: 19
dead letters for 10). ``baton dlq replay`` clears the marker of what it republishes, so a
replayed message still bad is copied again.

The marker is written *after* the copy is confirmed, never claimed before it: a claim
followed by a crash would make the next redelivery look copied and drop the message. The
price is a duplicate copy if the process dies between the copy and the marker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Protocol

from redis.asyncio import Redis

from contracts import envelope as env
from messaging.transport.codec import Wire

# Every key shape of this module. The digest covers the source queue and the identity.
MARK_KEY = "{namespace}baton:dead-letter:{digest}"
MARK_TTL_S = 24 * 3600  # a redelivery after a lost ack comes long before this
TIMEOUT_S = 2.0  # a Redis slower than this counts as unreachable: the delivery is requeued

# Headers the copy adds and the replay removes: not part of what the message is.
_COPY_HEADERS = frozenset({env.H_REASON, env.H_SOURCE_QUEUE})


def identity(wire: Wire) -> str:
    """What makes two deliveries the same message: its id and body, else a hash of body and
    headers. The body is part of it so that a publisher reusing a message id for another
    message (against the protocol) never has that one acked unseen."""
    if wire.message_id:
        return f"id:{wire.message_id}:{hashlib.sha256(wire.body).hexdigest()[:16]}"
    headers = {k: v for k, v in wire.headers.items() if k not in _COPY_HEADERS}
    digest = hashlib.sha256(wire.body)
    digest.update(json.dumps(headers, sort_keys=True, default=repr).encode())
    return f"sha256:{digest.hexdigest()}"


def mark_key(namespace: str, queue: str, wire: Wire) -> str:
    """The marker of ``wire`` dead-lettered from ``queue`` (hashed: ids may be long or odd)."""
    digest = hashlib.sha256(f"{queue}\n{identity(wire)}".encode()).hexdigest()[:32]
    return MARK_KEY.format(namespace=namespace, digest=digest)


class DeadLetterMarks(Protocol):
    """Which messages were already copied to a dead-letter queue (a port: Redis or memory)."""

    async def copied(self, queue: str, wire: Wire) -> bool:
        """True if this message from ``queue`` was copied; raises if that cannot be known."""
        ...

    async def remember(self, queue: str, wire: Wire) -> bool:
        """Mark it copied; True when it was not marked before."""
        ...

    async def forget(self, queue: str, wire: Wire) -> None:
        """Drop the mark: the message starts a new life (a replay)."""
        ...


class RedisDeadLetterMarks:
    """Markers in the deployment's Redis, under its namespace, expiring after ``ttl_s``."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        *,
        ttl_s: int = MARK_TTL_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s

    def key(self, queue: str, wire: Wire) -> str:
        return mark_key(self._namespace, queue, wire)

    async def copied(self, queue: str, wire: Wire) -> bool:
        async with asyncio.timeout(self._timeout_s):
            return bool(await self._redis.exists(self.key(queue, wire)))

    async def remember(self, queue: str, wire: Wire) -> bool:
        async with asyncio.timeout(self._timeout_s):
            return bool(await self._redis.set(self.key(queue, wire), 1, nx=True, ex=self._ttl_s))

    async def forget(self, queue: str, wire: Wire) -> None:
        async with asyncio.timeout(self._timeout_s):
            await self._redis.delete(self.key(queue, wire))


class MemoryDeadLetterMarks:
    """The in-memory twin, for tests and the stub broker; markers never expire."""

    def __init__(self) -> None:
        self.marks: set[tuple[str, str]] = set()

    async def copied(self, queue: str, wire: Wire) -> bool:
        return (queue, identity(wire)) in self.marks

    async def remember(self, queue: str, wire: Wire) -> bool:
        key = (queue, identity(wire))
        first = key not in self.marks
        self.marks.add(key)
        return first

    async def forget(self, queue: str, wire: Wire) -> None:
        self.marks.discard((queue, identity(wire)))
