"""Effects turned into messages ready to publish, stored in the outbox by the same write.

Each message is signed here, when its entry is built, so the sweeper republishes exactly the
bytes that were signed (docs/protocol.md, "Signatures").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contracts.envelope import Envelope, new_message_id
from contracts.topology import Topology
from messaging.observability.tracing import child
from messaging.transport.codec import Wire
from messaging.trust.signing import Keyring, binary32_up
from orchestrator.core.effects import Effect, EmitEvent, SendCommand
from orchestrator.core.engine import command_message_id
from orchestrator.core.state import SagaState


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One message to publish. ``id`` is its message id, so a re-publish is recognisable."""

    id: str
    saga_id: str
    exchange: str
    routing_key: str
    wire: Wire

    def dumps(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "saga_id": self.saga_id,
                "exchange": self.exchange,
                "routing_key": self.routing_key,
                "body": self.wire.body.decode(),
                "kind": self.wire.kind,
                "correlation_id": self.wire.correlation_id,
                "reply_to": self.wire.reply_to,
                "headers": dict(self.wire.headers),
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, raw: str | bytes) -> OutboxEntry:
        data: dict[str, Any] = json.loads(raw)
        wire = Wire(
            body=data["body"].encode(),
            kind=data["kind"],
            message_id=data["id"],
            correlation_id=data["correlation_id"],
            reply_to=data["reply_to"],
            headers=data["headers"],
        )
        return cls(data["id"], data["saga_id"], data["exchange"], data["routing_key"], wire)


def _hop(state: SagaState, name: str, attributes: dict[str, str | int]) -> str:
    """A child span of the saga's trace; a saga without one (older data) sends none."""
    return child(state.traceparent, name, attributes) if state.traceparent else ""


def _attributes(state: SagaState, effect: SendCommand) -> dict[str, str | int]:
    return {
        "baton.saga_id": state.saga_id,
        "baton.step": effect.step,
        "baton.phase": effect.phase,
        "baton.attempt": effect.attempt,
    }


def _command(
    topology: Topology, state: SagaState, effect: SendCommand, keyring: Keyring
) -> OutboxEntry:
    # model_construct: every value comes from the engine's own checked state, and this runs
    # for every outgoing message (participants validate what they receive)
    envelope = Envelope.model_construct(
        kind=effect.kind,
        message_id=command_message_id(effect.effect_id, effect.attempt),
        saga_id=state.saga_id,
        saga=state.saga,
        step=effect.step,
        phase=effect.phase,
        effect_id=effect.effect_id,
        compensates=effect.compensates,
        attempt=effect.attempt,
        # AMQP carries it in single precision (a 128 s grid at today's epoch): rounded up to
        # it, so a command never expires before the engine meant, and the value signed is
        # exactly the one that arrives
        deadline=binary32_up(effect.expires_at),
        # each command is a child span of the saga's: same trace id, a span id of its own
        traceparent=_hop(state, f"send {effect.kind}", _attributes(state, effect)),
    )
    # the engine validated the body against the definition's contract of this kind
    body = json.dumps(effect.body, separators=(",", ":")).encode()
    # Past its x-baton-deadline a participant drops it unhandled (docs/protocol.md): AMQP
    # expiration would have the command queue's dead-letter exchange collect every one.
    wire = Wire(body, effect.kind, envelope.message_id, state.saga_id, headers=envelope.headers())
    return OutboxEntry(
        envelope.message_id,
        state.saga_id,
        topology.commands_exchange,
        topology.command_routing_key(effect.participant),
        keyring.sign(wire),
    )


def _events(
    topology: Topology, state: SagaState, effect: EmitEvent, keyring: Keyring
) -> list[OutboxEntry]:
    body = effect.event.model_dump_json().encode()
    envelope = Envelope.model_construct(
        kind=effect.event.KIND,
        saga_id=state.saga_id,
        saga=state.saga,
        traceparent=_hop(state, f"saga {effect.event.event}", {"baton.saga_id": state.saga_id}),
    )
    wire = Wire(
        body, effect.event.KIND, envelope.message_id, state.saga_id, headers=envelope.headers()
    )
    routing = topology.event_routing_key(state.saga, effect.event.event)
    entries = [
        OutboxEntry(
            envelope.message_id, state.saga_id, topology.events_exchange, routing,
            keyring.sign(wire),
        )
    ]  # fmt: skip
    if effect.final and state.reply_to:
        reply_id = new_message_id()
        reply = Wire(body, effect.event.KIND, reply_id, state.saga_id, headers=envelope.headers())
        entries.append(
            OutboxEntry(reply_id, state.saga_id, "", state.reply_to, keyring.sign(reply))
        )
    return entries


def outbox_entries(
    topology: Topology, state: SagaState, effects: tuple[Effect, ...], keyring: Keyring
) -> list[OutboxEntry]:
    """The messages for a decision's effects, in order, each signed with ``keyring``."""
    entries: list[OutboxEntry] = []
    for effect in effects:
        if isinstance(effect, SendCommand):
            entries.append(_command(topology, state, effect, keyring))
        else:
            entries.extend(_events(topology, state, effect, keyring))
    return entries
