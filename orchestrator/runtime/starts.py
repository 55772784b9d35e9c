"""Handling a saga's start message: verify, decode, refuse the expired, create the saga
or answer a repeated key; and the ``rejected`` answer to a start that started nothing. A
mixin of ``orchestrator.runtime.runner.Orchestrator``, which owns the state these use.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

import structlog

from contracts.base import Start
from contracts.envelope import Envelope, new_message_id
from contracts.events import SagaEvent
from messaging.errors import ContractError
from messaging.observability.tracing import child, trace_id
from messaging.transport.codec import Wire, decode
from messaging.trust.signing import Keyring
from orchestrator.core.answers import idempotency_key_of, safe_reply_to
from orchestrator.core.catalog import Catalog, saga_id_for
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.effects import EmitEvent
from orchestrator.core.engine import describe, start
from orchestrator.core.state import SagaState
from orchestrator.runtime.chaos import CrashPoints
from orchestrator.runtime.errors import ConcurrencyConflict
from orchestrator.runtime.metrics import OrchestratorMetrics
from orchestrator.runtime.outbox import OutboxEntry, outbox_entries
from orchestrator.runtime.store import SagaStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from contracts.topology import Topology
    from messaging.transport.port import Transport
    from orchestrator.runtime.runner import RunnerConfig


class StartHandling:
    """``handle_start`` and the answers to starts that start nothing new."""

    _catalog: Catalog
    _store: SagaStore
    _broker: Transport
    _topology: Topology
    _keyring: Keyring
    _config: RunnerConfig
    _clock: Callable[[], float]
    _crash: CrashPoints | None
    metrics: OrchestratorMetrics

    def _remember(self, state: SagaState) -> None:
        raise NotImplementedError  # Orchestrator._remember

    async def _publish(self, saga_id: str, outbox: Sequence[OutboxEntry]) -> None:
        raise NotImplementedError  # Orchestrator._publish

    async def handle_start(self, wire: Wire) -> str:
        """Start a saga from a Start message; a repeated idempotency key starts nothing.

        Only a start signed by one of the configured upstreams is read at all."""
        self._keyring.verify_from(wire, self._keyring.upstreams, "starts")
        envelope, body = decode(wire, self._catalog.contracts, require_saga=False)
        if not isinstance(body, Start):
            raise ContractError("not_a_start_message", envelope.kind)
        self._refuse_expired(envelope)
        definition = self._catalog.for_trigger(envelope.kind)
        if definition is None:
            raise ContractError("no_saga_for_type", envelope.kind)
        saga_id = saga_id_for(definition.name, body.idempotency_key)
        structlog.contextvars.bind_contextvars(saga_id=saga_id, saga=definition.name)
        # the saga's own span, under the caller's when it sent one; else a new trace
        traceparent = child(envelope.traceparent, f"saga {definition.name}",
                            {"baton.saga_id": saga_id})  # fmt: skip
        structlog.contextvars.bind_contextvars(trace_id=trace_id(traceparent))
        decision = start(
            definition,
            saga_id,
            body,
            self._clock(),
            reply_to=safe_reply_to(wire.reply_to or "", self._topology),
            traceparent=traceparent,
        )
        outbox = outbox_entries(self._topology, decision.state, decision.effects, self._keyring)
        if await self._store.create(decision.state, decision.history, outbox):
            self._remember(decision.state.model_copy(update={"version": 1}))
            self.metrics.observe(decision)
            if self._crash:
                self._crash("after_commit")
            await self._publish(saga_id, outbox)
            return "started"
        existing = await self._store.load(saga_id)
        if existing is None:  # expired between the two calls: requeue and start afresh
            raise ConcurrencyConflict(saga_id)
        if existing.input != decision.state.input:
            raise ContractError("idempotency_key_reused", "same key, different transaction")
        await self._answer_duplicate(definition, existing, wire.reply_to or "")
        return "duplicate_start"

    def _refuse_expired(self, envelope: Envelope) -> None:
        """A start sent longer than ``start_ttl_s`` ago, or past its own deadline, starts
        nothing: its caller has likely given up (answered ``rejected``, ``start_expired``)."""
        now, ttl = self._clock(), self._config.start_ttl_s
        if envelope.sent_at is not None and now - envelope.sent_at > ttl:
            age = now - envelope.sent_at
            raise ContractError("start_expired", f"sent {age:.0f} s ago (limit {ttl:g} s)")
        if envelope.deadline is not None and now > envelope.deadline:
            raise ContractError("start_expired", "past its x-baton-deadline")

    async def _answer_duplicate(
        self, definition: SagaDefinition, existing: SagaState, reply_to: str
    ) -> None:
        """Tell the caller of a repeated start where its saga stands (on the events exchange,
        and on its ``reply_to``). Not stored: a failed publish requeues the start, whose
        redelivery answers again."""
        defined = self._catalog.get(existing.saga, existing.definition_version) or definition
        event = EmitEvent(describe(defined, existing, "duplicate"), final=True)
        answer = existing.model_copy(update={"reply_to": safe_reply_to(reply_to, self._topology)})
        entries = outbox_entries(self._topology, answer, (event,), self._keyring)
        await self._broker.publish_many((e.wire, e.exchange, e.routing_key) for e in entries)

    async def _answer_rejected_start(self, wire: Wire, reason: str) -> None:
        """A start that started nothing still gets an answer: a ``rejected`` event with the
        reason, on the events exchange and its ``reply_to``. Best effort: the message itself
        goes to the dead-letter queue with the same reason whatever happens here."""
        definition = self._catalog.for_trigger(wire.kind or "")
        key = idempotency_key_of(wire.body)
        saga = definition.name if definition else "unknown"
        event = SagaEvent(
            saga_id=saga_id_for(saga, key) if definition and key else "",
            saga=saga,
            event="rejected",
            status="rejected",
            reason=reason,
            idempotency_key=key,
        )
        body = event.model_dump_json().encode()
        routes = [
            (self._topology.events_exchange, self._topology.event_routing_key(saga, "rejected"))
        ]
        if reply_to := safe_reply_to(wire.reply_to or "", self._topology):
            routes.append(("", reply_to))
        with suppress(Exception):
            await self._broker.publish_many(
                (self._keyring.sign(Wire(body, event.KIND, new_message_id(), event.saga_id)),
                 exchange, key_)
                for exchange, key_ in routes
            )  # fmt: skip
