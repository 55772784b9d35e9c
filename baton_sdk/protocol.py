"""The participant protocol (docs/protocol.md §"What a participant does") without AMQP.

``accept`` verifies (signed by the orchestrator), decodes and checks one message;
``Responder.answer`` decides what becomes of an accepted command and returns a *verdict*:
``Publish`` a reply, ``Redeliver`` it after a pause (infrastructure trouble, or a subject
busy for too long), ``Drop`` it (expired), or ``DeadLetter`` it (undecodable, unsigned).
The worker maps verdicts to broker actions; a simulation can drive this module directly, on
a virtual-time event loop with an injected clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import structlog

from baton_sdk.chaos import Chaos
from baton_sdk.handlers import Handlers, MessageContext, Route
from baton_sdk.inbox import ClaimStatus, Held, Inbox, held
from contracts.base import Command, Reply, StepFailed
from contracts.envelope import H_COMPENSATES, H_EFFECT_ID, Envelope
from messaging.errors import ContractError, StepRejected, TransientError
from messaging.observability.tracing import child
from messaging.redis_client import REDIS_UNAVAILABLE
from messaging.settings import ParticipantSettings
from messaging.transport.codec import Wire, decode, encode
from messaging.trust.signing import ORCHESTRATOR, Keyring

log = structlog.get_logger(__name__)

# Participant infrastructure, not an answer: nothing recorded, no reply, redelivered later.
INFRASTRUCTURE: tuple[type[Exception], ...] = (
    TransientError,
    *REDIS_UNAVAILABLE,  # down, failing over, or a write not yet on its replicas
)


class Outcome(StrEnum):
    """What became of one command; the ``outcome`` of the canonical log line and metric."""

    OK = "ok"  # handler succeeded, recorded, replied
    REJECTED = "rejected"  # business refusal, recorded, replied
    ERROR = "error"  # a bug in the handler: StepFailed(internal_error, retriable) replied
    DUPLICATE = "duplicate"  # a final outcome was stored already: replied again
    CANCELLED = "cancelled"  # a forward command compensated first: refused
    EXPIRED = "expired"  # past its deadline: dropped without reply
    RETRY = "retry"  # infrastructure error: nacked after a pause, no reply
    BUSY = "busy"  # another delivery held the subject for a whole lease: nacked
    DEAD_LETTERED = "dead_lettered"
    PUBLISH_FAILED = "publish_failed"


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``reply`` (with a confirm), then ack the command."""

    reply: Reply
    outcome: Outcome
    error: str = ""


@dataclass(frozen=True, slots=True)
class Redeliver:
    """Hold the delivery ``after_s`` seconds, then nack it with requeue. No reply."""

    after_s: float
    outcome: Outcome
    error: str = ""


@dataclass(frozen=True, slots=True)
class Drop:
    """Ack without a reply."""

    outcome: Outcome
    error: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Copy to the dead-letter queue with ``reason``, then ack. No reply."""

    reason: str
    code: str
    outcome: Outcome = Outcome.DEAD_LETTERED
    error: str = ""


Verdict = Publish | Redeliver | Drop | DeadLetter
_REPEATED = {ClaimStatus.OUTCOME: Outcome.DUPLICATE, ClaimStatus.CANCELLED: Outcome.CANCELLED}


@dataclass(frozen=True, slots=True)
class Accepted:
    """A decoded command this participant handles."""

    envelope: Envelope
    body: Command
    route: Route


def accept(wire: Wire, handlers: Handlers, participant: str, keyring: Keyring) -> Accepted:
    """Verify, decode and check a command this participant can handle; else ContractError.

    Only a command signed by the orchestrator is read at all (``unsigned``, ``unknown_key``,
    ``bad_signature``, ``wrong_sender`` otherwise).
    """
    keyring.verify_from(wire, (ORCHESTRATOR,), "commands")
    envelope, body = decode(wire, handlers)  # the participant's own models of its messages
    route = handlers.route(envelope.kind)
    if route is None or not isinstance(body, route.command):
        raise ContractError("no_handler", f"{participant} does not handle {envelope.kind}")
    if not envelope.effect_id:
        raise ContractError("missing_effect_id", H_EFFECT_ID)
    if envelope.phase == "compensate" and not envelope.compensates:
        raise ContractError("missing_compensates", H_COMPENSATES)
    return Accepted(envelope, body, route)


def internal_error(exc: Exception) -> StepFailed:
    """The retriable reply to a handler bug: the engine retries the same effect id."""
    detail = f"{type(exc).__name__}: {exc}"[:2000]
    return StepFailed(reason="internal_error", retriable=True, detail=detail)


def refusal(exc: StepRejected) -> StepFailed:
    """The final reply to a business refusal."""
    return StepFailed(reason=exc.reason[:200] or "rejected", detail=exc.detail[:2000])


def reply_wire(envelope: Envelope, answer: Publish, participant: str, keyring: Keyring) -> Wire:
    """The reply to ``envelope``: its saga position and attempt, a new message id, a child
    span, signed with ``keyring`` (the participant's own key)."""
    reply = envelope.reply(answer.reply.KIND)
    if envelope.traceparent:  # the reply is a child span of the command (same trace)
        span = child(
            envelope.traceparent,
            f"{participant} {envelope.kind}",
            {"baton.step": envelope.step, "baton.outcome": str(answer.outcome)},
        )
        reply = reply.model_copy(update={"traceparent": span})
    return keyring.sign(encode(reply, answer.reply))


class Responder:
    """Decides the verdict for one command: expiry, claim, handler (through chaos), record."""

    def __init__(
        self,
        handlers: Handlers,
        inbox: Inbox,
        settings: ParticipantSettings,
        *,
        keyring: Keyring,
        participant: str = "",
        chaos: Chaos | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.participant = participant
        self.keyring = keyring  # verifies commands; the worker signs replies with it
        self._handlers = handlers
        self._inbox = inbox
        self._settings = settings
        self._rng = rng or random.Random()
        self.chaos = chaos or Chaos(settings, self._rng)
        self._clock = clock

    async def handle(self, wire: Wire) -> tuple[Accepted | None, Verdict]:
        """``accept`` then ``answer``: the whole decision for one message off the wire."""
        try:
            command = accept(wire, self._handlers, self.participant, self.keyring)
        except ContractError as exc:
            return None, DeadLetter(str(exc), exc.reason)
        return command, await self.answer(command)

    async def answer(self, command: Accepted) -> Verdict:
        """The verdict for an accepted command. Only cancellation propagates."""
        ctx = MessageContext.of(command.envelope)
        if self.expired(command.envelope):
            return await self._expired(ctx)
        try:
            async with held(
                self._inbox, ctx.effect_id, compensates=ctx.compensates,
                lease_s=self._settings.lease_s,
            ) as claim:  # fmt: skip
                if claim.outcome is not None:  # final already: answer it again
                    return Publish(claim.outcome, _REPEATED[claim.claim.status])
                if claim.busy:  # held by another delivery for a whole lease
                    return Redeliver(0.0, Outcome.BUSY)
                if self.expired(command.envelope):  # it expired while we waited for the lease
                    return Drop(Outcome.EXPIRED)
                return await self._run(command, ctx, claim)
        except Exception as exc:  # only the inbox gets here: _run judges the handler's errors
            return self.retry(exc)

    def expired(self, envelope: Envelope) -> bool:
        """Whether the command's x-baton-deadline has passed (by the injected clock)."""
        return envelope.deadline is not None and envelope.deadline <= self._clock()

    async def _expired(self, ctx: MessageContext) -> Verdict:
        """Answer a stored outcome again; otherwise drop (a fresh attempt is on its way)."""
        try:
            stored = await self._inbox.stored(ctx.effect_id)
        except Exception:  # expired anyway: nothing is lost by dropping it
            log.warning("inbox_unavailable", exc_info=True)
            stored = None
        return Drop(Outcome.EXPIRED) if stored is None else Publish(stored, Outcome.DUPLICATE)

    async def _run(self, command: Accepted, ctx: MessageContext, claim: Held) -> Verdict:
        """Run the handler through chaos and classify what it did (protocol §5)."""
        forward = ctx.phase == "forward"
        try:
            reply = await self._call(command, ctx)
        except StepRejected as exc:
            refused = refusal(exc)
            return _published(await claim.record(refused), refused, Outcome.REJECTED)
        except INFRASTRUCTURE as exc:
            return self.retry(exc)
        except Exception as exc:  # a bug: not final, not recorded; the lease is released
            log.warning("handler_failed", exc_info=True)
            return Publish(internal_error(exc), Outcome.ERROR, error=type(exc).__name__)
        return _published(await claim.record(reply, bury=not forward), reply, Outcome.OK)

    async def _call(self, command: Accepted, ctx: MessageContext) -> Reply:
        reply = await self.chaos.call(
            lambda: command.route.handler(command.body, ctx), forward=ctx.phase == "forward"
        )
        if not isinstance(reply, Reply):
            kind = command.route.command.KIND
            raise TypeError(f"handler for {kind} returned {type(reply).__name__}")
        return reply

    def retry(self, exc: Exception) -> Redeliver:
        """Infrastructure trouble: no answer; redeliver after a jittered pause."""
        log.warning("infrastructure_error", error=type(exc).__name__, exc_info=True)
        low, high = self._settings.redeliver_min_s, self._settings.redeliver_max_s
        return Redeliver(self._rng.uniform(low, high), Outcome.RETRY, error=type(exc).__name__)


def _published(stored: Reply, ours: Reply, outcome: Outcome) -> Publish:
    """Reply what stays stored; when another delivery's outcome won, it is a duplicate."""
    return Publish(stored, outcome if stored == ours else Outcome.DUPLICATE)
