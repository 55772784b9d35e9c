"""The broker's consumers, and what becomes of one that RabbitMQ cancels.

RabbitMQ sends ``basic.cancel`` to a consumer whose queue is deleted; aiormq pops the tag and
calls the channel's ``on_consumer_cancel_callbacks``. The running services never declare (a
participant's broker user may not; ``baton declare`` does), so a cancelled consumer is not
re-created by declaring its queue: it is reported (``not_consuming``, which readiness reads),
and resumed, on a fresh channel, once the queue exists again (checked passively, with the
same backoff as at start-up). aio-pika's robust queue would otherwise remember the old tag
and restore it by itself (the installed 10.x probes every 5 s): we forget the tag, so that
only one of us resumes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

__all__ = ["Consumer", "Consumers", "Handler", "cancelled_reason"]

log = structlog.get_logger(__name__)

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]
RESUME_FAILED_PAUSE_S = 2.0  # after a consume that failed although the queue exists


def cancelled_reason(queue: str) -> str:
    """What readiness says while ``queue``'s consumer is cancelled and not yet resumed."""
    return f"consumer cancelled: queue {queue} gone"


@dataclass
class Consumer:
    """One consumer on its own channel, with what it takes to start it again."""

    queue: str
    handler: Handler
    prefetch: int
    channel: AbstractRobustChannel
    declared: AbstractQueue
    tag: str


# Start a consumer (passively: never declares); wait until a queue exists (False: stopped).
Start = Callable[[str, Handler, int], Awaitable[Consumer]]
Wait = Callable[[str, asyncio.Event], Awaitable[bool]]


class Consumers:
    """The live consumers, the queues whose consumer the broker cancelled, and their resumers."""

    def __init__(self, start: Start, wait: Wait) -> None:
        self._start = start
        self._wait = wait
        self._live: list[Consumer] = []
        self._gone: dict[str, str] = {}  # queue -> reason, while not consuming it
        self._resumers: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    def not_consuming(self) -> list[str]:
        """Why each cancelled consumer is not consuming (empty while all of them are)."""
        return list(self._gone.values())

    async def add(self, consumer: Consumer) -> None:
        """Track ``consumer`` and listen for the broker cancelling it (again after a reconnect,
        which gives the robust channel a new underlying channel)."""
        self._stop.clear()
        self._live.append(consumer)
        await self._listen(consumer)
        consumer.channel.reopen_callbacks.add(lambda *_: self._relisten(consumer))

    def _relisten(self, consumer: Consumer) -> None:
        task = asyncio.create_task(self._listen(consumer))
        self._resumers.add(task)
        task.add_done_callback(self._resumers.discard)

    async def _listen(self, consumer: Consumer) -> None:
        underlay = cast(aiormq.Channel, await consumer.channel.get_underlay_channel())

        async def on_cancel(frame: Any) -> None:
            if frame.consumer_tag == consumer.tag and consumer in self._live:
                await self._cancelled(consumer)

        underlay.on_consumer_cancel_callbacks.add(on_cancel)

    async def _cancelled(self, consumer: Consumer) -> None:
        self._live.remove(consumer)
        with suppress(Exception):  # forget the tag first (synchronously), so aio-pika won't
            await consumer.declared.cancel(consumer.tag, nowait=True)  # restore it as well
        self._gone[consumer.queue] = cancelled_reason(consumer.queue)
        log.warning("consumer_cancelled", queue=consumer.queue, reason="queue deleted")
        task = asyncio.create_task(self._resume(consumer), name=f"resume {consumer.queue}")
        self._resumers.add(task)
        task.add_done_callback(self._resumers.discard)

    async def _resume(self, old: Consumer) -> None:
        """Wait for the queue, consume it on a fresh channel, then drop the old channel."""
        while await self._wait(old.queue, self._stop):
            try:
                new = await self._start(old.queue, old.handler, old.prefetch)
            except Exception as exc:  # deleted again in between, or the connection dropped
                log.warning("consumer_resume_failed", queue=old.queue, error=repr(exc))
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), RESUME_FAILED_PAUSE_S)
                continue
            self._gone.pop(old.queue, None)
            await self.add(new)
            with suppress(Exception):  # its queue is gone: nothing of it left to settle
                await old.channel.close()
            log.info("consumer_resumed", queue=old.queue)
            return

    async def stop(self) -> None:
        """Cancel every consumer and resumer: no new deliveries; in-flight ones can still ack."""
        self._stop.set()
        for task in list(self._resumers):
            task.cancel()
        for consumer in self._live:
            with suppress(Exception):
                await consumer.declared.cancel(consumer.tag)
        self._live.clear()
        self._gone.clear()
