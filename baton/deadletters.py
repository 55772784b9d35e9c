"""Inspect and replay dead letters: the way back for a message once its cause is fixed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from contracts import envelope as env
from contracts.topology import Topology
from messaging.errors import SealedValueError
from messaging.transport.amqp import Broker, dead_letter_context, wire_of
from messaging.transport.codec import Wire
from messaging.transport.dead_marks import identity
from messaging.trust.sealing import KEYS_VARIABLE


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What an operator needs to judge a dead letter, without its (possibly sensitive) body."""

    message_id: str
    kind: str
    saga_id: str
    source_queue: str
    reason: str
    size: int
    identity: str = ""  # message id, or a hash of body and headers: repeats share it
    sealed: str = ""  # the key id its body is sealed with; empty: stored as it came

    def row(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "type": self.kind,
            "saga_id": self.saga_id,
            "source_queue": self.source_queue,
            "reason": self.reason,
            "bytes": self.size,
            "sealed": self.sealed,
        }


def _header_shown(headers: Mapping[str, Any], name: str) -> str:
    """A header as text, whatever its AMQP type (``wire_of`` made every value safe)."""
    value = headers.get(name)
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a dead letter cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def dead_queue_of(topology: Topology, name: str) -> str:
    """Accept ``start``, ``replies``, ``cmd.payment`` or a full queue name."""
    if name.startswith(topology.namespace + "baton."):
        full = name
    else:
        full = topology.namespace + "baton." + name
    if ".dead." in full:
        return full
    return topology.dead_letter_queue(full)


def describe(message: AbstractIncomingMessage, default_source: str) -> DeadLetter:
    """A dead letter's row, whatever bytes and types its properties and headers hold."""
    wire = wire_of(message)
    headers = wire.headers
    return DeadLetter(
        message_id=_printable(wire.message_id or ""),
        kind=_printable(wire.kind or ""),
        saga_id=_printable(_header_shown(headers, env.H_SAGA_ID) or (wire.correlation_id or "")),
        source_queue=_header_shown(headers, env.H_SOURCE_QUEUE) or default_source,
        reason=_printable(_header_shown(headers, env.H_REASON) or "rejected by the broker"),
        size=len(wire.body),
        # a sealed copy's body differs from copy to copy (a fresh nonce): go by its id then
        identity=f"id:{wire.message_id}" if wire.message_id else identity(wire),
        sealed=_header_shown(headers, env.H_SEALED),
    )


def distinct(letters: Iterable[DeadLetter]) -> int:
    """How many different messages the letters are: a message copied twice counts once."""
    return len({letter.identity for letter in letters})


def _source_of(topology: Topology, dead_queue: str) -> str:
    bare = dead_queue.removeprefix(topology.namespace + "baton.dead.")
    return f"{topology.namespace}baton.{bare}"


async def peek(broker: Broker, dead_queue: str, limit: int) -> list[DeadLetter]:
    """Read up to ``limit`` dead letters without removing them (they are requeued on close)."""
    channel = await broker.connection.channel()
    try:
        queue = await channel.declare_queue(dead_queue, passive=True)
        found: list[DeadLetter] = []
        while len(found) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            found.append(describe(message, _source_of(broker.topology, dead_queue)))
        return found
    finally:
        await channel.close()  # unacked messages go back to the dead-letter queue


async def census(broker: Broker, dead_queue: str) -> tuple[int, int]:
    """Messages in a dead-letter queue and how many distinct ones among them (none removed)."""
    letters = await peek(broker, dead_queue, await broker.queue_depth(dead_queue))
    return len(letters), distinct(letters)


def unsealed(broker: Broker, wire: Wire, source_queue: str) -> Wire:
    """The message as it was before it was dead-lettered: body opened, copy headers gone."""
    copy_headers = (env.H_REASON, env.H_SOURCE_QUEUE, env.H_SEALED)
    headers = {k: v for k, v in wire.headers.items() if k not in copy_headers}
    if env.H_SEALED not in wire.headers:
        return replace(wire, headers=headers)
    if broker.sealer is None:
        raise SealedValueError(f"the dead letters are sealed: set {KEYS_VARIABLE} to replay them")
    try:
        text = wire.body.decode("ascii")  # a sealed body is ASCII; anything else was forged
    except UnicodeDecodeError:
        raise SealedValueError("marked sealed, but the body is not a sealed value") from None
    body = broker.sealer.open(text, dead_letter_context(source_queue))
    return replace(wire, body=body, headers=headers)


async def replay(broker: Broker, dead_queue: str, limit: int) -> int:
    """Republish up to ``limit`` dead letters to their source queue, then ack each one.

    The reason headers are removed so a replayed message is judged afresh; one that is
    still bad simply comes back with a new reason. Its dead-letter mark is cleared first,
    so even a redelivery of the replayed message is copied again. Nothing is lost between
    the two queues: the copy is confirmed before the original is acked. A sealed body is
    opened first (the broker needs the sealer); one that does not open stops the replay
    there, itself unacked. Only the letters there when it starts are replayed: one still
    bad comes back behind them, and replaying it again would loop until ``limit``.
    """
    channel = await broker.connection.channel()
    moved = 0
    try:
        queue = await channel.declare_queue(dead_queue, passive=True)
        limit = min(limit, queue.declaration_result.message_count or 0)
        while moved < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            letter = describe(message, _source_of(broker.topology, dead_queue))
            again = unsealed(broker, wire_of(message), letter.source_queue)
            if broker.dead_marks is not None:
                await broker.dead_marks.forget(letter.source_queue, again)
            await broker.publish(again, exchange="", routing_key=letter.source_queue)
            await message.ack()
            moved += 1
    finally:
        await channel.close()
    return moved
