"""The participant's consume loop: the broker side of the participant protocol.

``protocol.Responder`` decides what becomes of each command (expiry, claim of its effect id,
handler, record); this module only turns that verdict into broker actions, in ``_act``: a
reply is published with a confirm *before* the command is acked (a failed publish requeues
the command: its outcome is recorded, so the redelivery answers it again); an infrastructure
error holds the delivery for a jittered pause and then nacks it with requeue, never replying;
an expired command is acked and dropped; an undecodable one is dead-lettered. A command whose
handling raises (a bug) is requeued after a pause, and dead-lettered as poison once it has
failed ``poison_after`` times.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from contextlib import suppress
from functools import cached_property
from typing import NoReturn

import structlog
from redis.asyncio import Redis

from baton_sdk.chaos import Chaos
from baton_sdk.handlers import Handlers, MessageContext
from baton_sdk.inbox import Inbox
from baton_sdk.metrics import NoMetrics, WorkerMetrics
from baton_sdk.protocol import (
    DeadLetter,
    Drop,
    Outcome,
    Publish,
    Redeliver,
    Responder,
    Verdict,
    accept,
    reply_wire,
)
from baton_sdk.redis_inbox import RedisInbox
from contracts.envelope import Envelope
from messaging.errors import ContractError
from messaging.settings import ParticipantSettings
from messaging.transport.amqp import wire_of
from messaging.transport.poison import (
    FailureCounts,
    counts_as_poison,
    poison_reason,
    requeue_pause_s,
)
from messaging.transport.port import Delivery, Transport
from messaging.trust.signing import Keyring

__all__ = ["Outcome", "Worker"]

log = structlog.get_logger(__name__)
PUBLISH_RETRY_PAUSE_S = 0.25  # before a command whose reply was not confirmed goes back
CRASH_PAUSE_S = 0.2  # before a command whose handling raised goes back to its queue


class Worker:
    """Consumes one participant's command queue, handling messages concurrently up to prefetch.

    ``inbox`` defaults to the Redis inbox on ``redis``; ``clock`` (wall-clock seconds) is what
    command deadlines are compared with. ``keyring`` holds the participant's own signing key
    and the orchestrator's public keys: only commands the orchestrator signed are handled.
    """

    def __init__(
        self,
        name: str,
        handlers: Handlers,
        broker: Transport,
        redis: Redis,
        namespace: str,
        settings: ParticipantSettings,
        *,
        keyring: Keyring,
        rng: random.Random | None = None,
        metrics: WorkerMetrics | None = None,
        prefetch: int | None = None,
        exit_process: Callable[[int], NoReturn] = os._exit,
        inbox: Inbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._handlers = handlers
        self._broker = broker
        self._queue = broker.topology.command_queue(name)
        rng = rng or random.Random()
        self._chaos = Chaos(settings, rng, exit_process=exit_process)
        self._responder = Responder(
            handlers,
            inbox or RedisInbox(
                redis, namespace, name, ttl_s=settings.inbox_ttl_s, contracts=handlers
            ),
            settings, keyring=keyring, participant=name, chaos=self._chaos, rng=rng, clock=clock,
        )  # fmt: skip
        self._keyring = keyring
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

    async def _on_message(self, message: Delivery) -> None:
        if self._stopping:  # delivered while we were cancelling: hand it straight back
            with suppress(Exception):
                await message.nack(requeue=True)
            return
        self._inflight += 1
        self._idle.clear()
        try:
            await self._process(message)
        except Exception as exc:
            await self._crashed(message, exc)
        else:
            self.failures.settled(wire_of(message) if self.failures.counting else None)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _crashed(self, message: Delivery, exc: Exception) -> None:
        """Requeue a command whose handling raised, or dead-letter it as poison: one that
        failed ``poison_after`` times for a reason of its own (not a dependency's outage)."""
        wire = wire_of(message)
        failures = self.failures.failed(wire) if counts_as_poison(exc) else 0
        log.error("command_crashed", participant=self.name, failures=failures, exc_info=exc)
        if message.processed:  # acked or requeued before the crash: nothing left to do
            return
        if self.failures.is_poison(failures):
            await self._broker.dead_letter(message, self._queue, poison_reason(exc))
            return
        await asyncio.sleep(CRASH_PAUSE_S)  # no hot redelivery loop
        with suppress(Exception):  # a dead channel redelivers the message by itself
            await message.nack(requeue=True)

    @cached_property
    def failures(self) -> FailureCounts:
        """Failures per command (poison, liveness); a composition root may set its own."""
        return FailureCounts()

    async def _process(self, message: Delivery) -> None:
        started = time.perf_counter()
        try:
            command = accept(wire_of(message), self._handlers, self.name, self._keyring)
        except ContractError as exc:
            outcome = await self._act(message, None, DeadLetter(str(exc), exc.reason))
            self._finish(message.type or "", outcome, started, reason=exc.reason)
            return
        ctx = MessageContext.of(command.envelope)
        with structlog.contextvars.bound_contextvars(
            participant=self.name, saga_id=ctx.saga_id, saga=ctx.saga, step=ctx.step,
            phase=ctx.phase, attempt=ctx.attempt, effect_id=ctx.effect_id,
            message_id=ctx.message_id, trace_id=ctx.trace_id,
        ):  # fmt: skip
            verdict = await self._responder.answer(command)
            outcome = await self._act(message, command.envelope, verdict)
            self._finish(command.envelope.kind, outcome, started, error=verdict.error)

    async def _act(self, message: Delivery, envelope: Envelope | None, verdict: Verdict) -> Outcome:
        """The one place a verdict becomes a broker action."""
        match verdict:
            case Publish() if envelope is not None:
                return await self._reply(message, envelope, verdict)
            case Redeliver(after_s=after_s):
                if after_s:  # holding the delivery: no hot redelivery loop, and a slower
                    # one the more often it came back (a quorum queue's delivery limit)
                    await asyncio.sleep(requeue_pause_s(after_s, message.headers))
                with suppress(Exception):  # a dead channel redelivers the message by itself
                    await message.nack(requeue=True)
            case Drop():
                await self._ack(message)
            case DeadLetter(reason=reason):
                await self._broker.dead_letter(message, self._queue, reason)
            case _:
                raise TypeError(f"no broker action for {verdict!r}")
        return verdict.outcome

    async def _reply(self, message: Delivery, envelope: Envelope, answer: Publish) -> Outcome:
        """Publish the reply with a confirm, then ack; if publishing fails, requeue instead."""
        t = self._broker.topology
        wire = reply_wire(envelope, answer, self.name, self._keyring)
        try:
            for delay in self._chaos.reply_copies(envelope.kind, envelope.attempt):
                if delay:
                    await asyncio.sleep(delay)  # injected lateness (fault tests only)
                await self._broker.publish(
                    wire, exchange=t.replies_exchange, routing_key=t.replies_queue
                )
        except Exception:
            log.warning("reply_publish_failed", exc_info=True)
            # not at once: a broker refusing publishes would be asked again hundreds of times
            await asyncio.sleep(requeue_pause_s(PUBLISH_RETRY_PAUSE_S, message.headers))
            with suppress(Exception):
                await message.nack(requeue=True)
            return Outcome.PUBLISH_FAILED
        await self._ack(message)
        return answer.outcome

    @staticmethod
    async def _ack(message: Delivery) -> None:
        try:
            await message.ack()
        except Exception:  # the channel died: the command comes back and the inbox answers it
            log.warning("ack_failed", exc_info=True)

    def _finish(self, kind: str, outcome: Outcome, started: float, **extra: str) -> None:
        """Emit the canonical log line and the metric for one message."""
        seconds = time.perf_counter() - started
        self._metrics.observe(participant=self.name, kind=kind, outcome=outcome, seconds=seconds)
        fields = {k: v for k, v in extra.items() if v}
        log.info("command_handled", kind=kind, outcome=str(outcome),
                 duration_ms=round(seconds * 1000, 1), **fields)  # fmt: skip
