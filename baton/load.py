"""Drive a stream of start messages through a running Baton and collect the outcomes.

The driver listens the way an upstream system does: a private queue bound to the
``baton.events`` exchange for the saga's final lifecycle events (completed, compensated,
failed). Asking for a ``reply_to`` copy of the final event instead would make the
orchestrator publish each outcome twice. The latency of a saga is from publishing its
start to receiving its final event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from contracts.base import Start
from contracts.envelope import Envelope
from contracts.events import Lifecycle
from messaging.observability.tracing import new_traceparent
from messaging.transport.amqp import Broker
from messaging.transport.codec import encode
from messaging.trust.signing import Keyring
from orchestrator.core.catalog import saga_id_for

FINAL_EVENTS: tuple[Lifecycle, ...] = ("completed", "compensated", "failed")


@dataclass(frozen=True, slots=True)
class Outcome:
    saga_id: str
    event: str  # completed / compensated / failed
    failed_step: str | None
    reason: str | None
    latency_s: float


@dataclass
class Progress:
    """Live counters, read by whoever shows progress."""

    total: int
    sent: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    @property
    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.started_at, 1e-9)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class _Tally:
    """What ``drive`` keeps: the window of sagas in flight, when each was sent, the outcomes."""

    progress: Progress
    window: asyncio.Semaphore
    sent_at: dict[str, float] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    all_done: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_reply(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        event: dict[str, Any] = json.loads(message.body)
        key = event["saga_id"]
        if key not in self.sent_at:
            return  # another driver's saga, or a repeated final event: counted once
        latency = time.perf_counter() - self.sent_at.pop(key)
        self.outcomes.append(
            Outcome(key, event["event"], event.get("failed_step"), event.get("reason"), latency)
        )
        progress = self.progress
        progress.outcomes[event["event"]] = progress.outcomes.get(event["event"], 0) + 1
        self.window.release()
        if progress.done == progress.total:
            self.all_done.set()


async def drive(
    broker: Broker,
    starts: Sequence[Start],
    *,
    concurrency: int,
    timeout_s: float,
    on_progress: Callable[[Progress], None] | None = None,
    saga: str = "payment",
    keyring: Keyring,
) -> tuple[list[Outcome], Progress]:
    """Publish ``starts`` signed with ``keyring`` (an upstream's, e.g. ``cli``),
    ``concurrency`` at a time; return the outcomes seen in ``timeout_s``."""
    tally = _Tally(Progress(total=len(starts)), asyncio.Semaphore(concurrency))
    channel = await broker.connection.channel()
    queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
    topology = broker.topology
    for final in FINAL_EVENTS:
        await queue.bind(topology.events_exchange, topology.event_routing_key(saga, final))
    await queue.consume(tally.on_reply, no_ack=False)
    try:
        async with asyncio.timeout(timeout_s):
            await _publish(broker, starts, tally, on_progress, saga, keyring)
            while not tally.all_done.is_set() and starts:
                with suppress(TimeoutError):  # wake twice a second to show progress
                    await asyncio.wait_for(tally.all_done.wait(), 0.5)
                if on_progress:
                    on_progress(tally.progress)
    except TimeoutError:
        pass  # the caller reports what did not finish
    finally:
        await channel.close()
    return tally.outcomes, tally.progress


async def _publish(
    broker: Broker, starts: Sequence[Start], tally: _Tally,
    on_progress: Callable[[Progress], None] | None, saga: str, keyring: Keyring,
) -> None:  # fmt: skip
    """Publish each start once the window has room for it."""
    for body in starts:
        saga_id = saga_id_for(saga, body.idempotency_key)
        await tally.window.acquire()
        envelope = Envelope(kind=body.KIND, saga_id="-", traceparent=new_traceparent())
        tally.sent_at[saga_id] = time.perf_counter()
        await broker.publish(
            keyring.sign(encode(envelope, body)), exchange="",
            routing_key=broker.topology.start_queue,
        )  # fmt: skip
        tally.progress.sent += 1
        if on_progress:
            on_progress(tally.progress)
