"""The participant's consume loop: decode, deduplicate, handle, store, reply, ack.

Per command (design §7): a message that cannot be decoded, names a command this worker
does not handle, or lacks an effect id goes to the dead-letter queue. Otherwise the inbox
is asked first (a repeat gets the stored reply, stamped with this attempt); a forward
command already compensated is refused with ``StepFailed("cancelled")``; else the handler
runs, a success or business refusal is stored, and the reply is published with a confirm
*before* the command is acked. A failed publish nacks the command back onto the queue.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

import structlog
from aio_pika.abc import AbstractIncomingMessage
from redis.asyncio import Redis

from contracts.base import Command, Reply, StepFailed
from contracts.envelope import H_COMPENSATES, H_EFFECT_ID, Envelope
from messaging.amqp import Broker, wire_of
from messaging.codec import decode, encode
from messaging.errors import ContractError, StepRejected, TransientError
from messaging.settings import ParticipantSettings
from messaging.tracing import child
from participants.sdk.chaos import Chaos
from participants.sdk.handlers import Handlers, MessageContext, Route
from participants.sdk.inbox import Inbox
from participants.sdk.metrics import NoMetrics, WorkerMetrics

log = structlog.get_logger(__name__)


class Outcome(StrEnum):
    """What became of one command; the ``outcome`` of the canonical log line and metric."""

    OK = "ok"
    REJECTED = "rejected"
    ERROR = "error"
    DUPLICATE = "duplicate"
    CANCELLED = "cancelled"
    DEAD_LETTER = "dead_letter"
    PUBLISH_FAILED = "publish_failed"


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply to send and how it came about."""

    reply: Reply
    outcome: Outcome
    error: str = ""


def technical_failure(exc: Exception) -> Answer:
    """A retriable StepFailed for an exception that is not a business refusal."""
    reason = "transient_error" if isinstance(exc, TransientError) else "internal_error"
    detail = f"{type(exc).__name__}: {exc}"[:2000]
    return Answer(
        StepFailed(reason=reason, retriable=True, detail=detail),
        Outcome.ERROR,
        error=type(exc).__name__,
    )


class Worker:
    """Consumes one participant's command queue, handling messages concurrently up to prefetch."""

    def __init__(
        self,
        name: str,
        handlers: Handlers,
        broker: Broker,
        redis: Redis,
        namespace: str,
        settings: ParticipantSettings,
        *,
        rng: random.Random | None = None,
        metrics: WorkerMetrics | None = None,
        prefetch: int | None = None,
        exit_process: Callable[[int], NoReturn] = os._exit,
    ) -> None:
        self.name = name
        self._handlers = handlers
        self._broker = broker
        self._queue = broker.topology.command_queue(name)
        self._inbox = Inbox(redis, namespace, name, ttl_s=settings.inbox_ttl_s)
        self._chaos = Chaos(settings, rng or random.Random(), exit_process=exit_process)
        self._metrics: WorkerMetrics = metrics or NoMetrics()
        self._prefetch = prefetch
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the messages in flight and return.

        The worker owns its broker's consumers: stopping cancels all of them.
        """
        await self._broker.consume(self._queue, self._on_message, prefetch=self._prefetch)
        log.info("worker_started", participant=self.name, queue=self._queue)
        try:
            await stop.wait()
        finally:
            self._stopping = True
            await self._broker.stop_consuming()  # no new deliveries; in-flight ones can still ack
        await self._idle.wait()
        log.info("worker_stopped", participant=self.name)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:  # delivered while we were cancelling: hand it straight back
            with suppress(Exception):
                await message.nack(requeue=True)
            return
        self._inflight += 1
        self._idle.clear()
        try:
            await self._process(message)
        except Exception:
            log.exception("command_crashed", participant=self.name)
            with suppress(Exception):
                await message.reject(requeue=False)  # the queue's own DLX keeps it
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _process(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        try:
            envelope, body, route = self._accept(message)
        except ContractError as exc:
            await self._broker.dead_letter(message, self._queue, str(exc))
            self._finish(message.type or "", Outcome.DEAD_LETTER, started, reason=exc.reason)
            return
        ctx = MessageContext.of(envelope)
        with structlog.contextvars.bound_contextvars(
            participant=self.name, saga_id=ctx.saga_id, saga=ctx.saga, step=ctx.step,
            phase=ctx.phase, attempt=ctx.attempt, effect_id=ctx.effect_id,
            message_id=ctx.message_id, trace_id=ctx.trace_id,
        ):  # fmt: skip
            answer = await self._answer(route, body, ctx)
            outcome = await self._send(message, envelope, answer)
            self._finish(envelope.kind, outcome, started, error=answer.error)

    def _accept(self, message: AbstractIncomingMessage) -> tuple[Envelope, Command, Route]:
        """Decode and check the message is a command this worker can handle; else ContractError."""
        envelope, body = decode(wire_of(message))
        route = self._handlers.route(envelope.kind)
        if route is None or not isinstance(body, route.command):
            raise ContractError("no_handler", f"{self.name} does not handle {envelope.kind}")
        if not envelope.effect_id:
            raise ContractError("missing_effect_id", H_EFFECT_ID)
        if envelope.phase == "compensate" and not envelope.compensates:
            raise ContractError("missing_compensates", H_COMPENSATES)
        return envelope, body, route

    async def _answer(self, route: Route, body: Command, ctx: MessageContext) -> Answer:
        """The reply for this command; every exception but cancellation becomes retriable."""
        try:
            return await self._settle(route, body, ctx)
        except Exception as exc:
            return technical_failure(exc)

    async def _settle(self, route: Route, body: Command, ctx: MessageContext) -> Answer:
        stored, cancelled_first = await self._inbox.lookup(
            ctx.effect_id, forward=ctx.phase == "forward"
        )
        if stored is not None:
            return Answer(stored, Outcome.DUPLICATE)
        if cancelled_first:
            cancelled = StepFailed(reason="cancelled", retriable=False)
            return Answer(await self._inbox.remember(ctx.effect_id, cancelled), Outcome.CANCELLED)
        try:
            reply = await self._chaos.call(
                lambda: route.handler(body, ctx), forward=ctx.phase == "forward"
            )
        except StepRejected as exc:
            refused = StepFailed(reason=exc.reason[:200] or "rejected", detail=exc.detail[:2000])
            return Answer(await self._inbox.remember(ctx.effect_id, refused), Outcome.REJECTED)
        if not isinstance(reply, Reply):
            raise TypeError(f"handler for {route.command.KIND} returned {type(reply).__name__}")
        if ctx.phase == "compensate":
            await self._inbox.bury(ctx.compensates)  # whether or not the forward was ever seen
        return Answer(await self._inbox.remember(ctx.effect_id, reply), Outcome.OK)

    async def _send(
        self, message: AbstractIncomingMessage, envelope: Envelope, answer: Answer
    ) -> Outcome:
        """Publish the reply with a confirm, then ack; if publishing fails, requeue instead."""
        t = self._broker.topology
        reply = envelope.reply(answer.reply.KIND)  # this attempt's stamp
        if envelope.traceparent:  # the reply is a child span of the command (same trace)
            span = child(
                envelope.traceparent,
                f"{self.name} {envelope.kind}",
                {"baton.step": envelope.step, "baton.outcome": str(answer.outcome)},
            )
            reply = reply.model_copy(update={"traceparent": span})
        wire = encode(reply, answer.reply)
        try:
            for delay in self._chaos.reply_copies(envelope.kind, envelope.attempt):
                if delay:
                    await asyncio.sleep(delay)  # injected lateness (fault tests only)
                await self._broker.publish(
                    wire, exchange=t.replies_exchange, routing_key=t.replies_queue
                )
        except Exception:
            log.warning("reply_publish_failed", exc_info=True)
            with suppress(Exception):
                await message.nack(requeue=True)
            return Outcome.PUBLISH_FAILED
        try:
            await message.ack()
        except Exception:  # the channel died: the command comes back and the inbox answers it
            log.warning("ack_failed", exc_info=True)
        return answer.outcome

    def _finish(self, kind: str, outcome: Outcome, started: float, **extra: str) -> None:
        """Emit the canonical log line and the metric for one message."""
        seconds = time.perf_counter() - started
        self._metrics.observe(participant=self.name, kind=kind, outcome=outcome, seconds=seconds)
        fields = {k: v for k, v in extra.items() if v}
        log.info("command_handled", kind=kind, outcome=str(outcome),
                 duration_ms=round(seconds * 1000, 1), **fields)  # fmt: skip
