"""The AsyncAPI 3.0 document of a deployment: its contracts, its saga definitions, its topology.

Written from the orchestrator's side, as AsyncAPI 3 describes one application: it receives
starts and answers them, sends each step's command to its participant's queue and gets the
reply (the step's success reply, or ``StepFailed``) on the replies queue, publishes
lifecycle events, and copies what it cannot handle to dead-letter queues (participants do
the same with theirs, which the document lists too). Schemas are the contracts' own, so
the document cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, get_args

from baton.asyncapi import amqp
from baton.asyncapi.headers import HEADER_ROLES, HeaderRole, headers_schema, schema_name
from baton.asyncapi.inputs import (
    Contracts,
    DefinitionLike,
    StepLike,
    leaf_steps,
    placement,
    ref,
)
from baton.asyncapi.schemas import contract_schemas
from contracts import envelope as env
from contracts.base import Contract, StepFailed
from contracts.events import Lifecycle, SagaEvent
from contracts.registry import role_of
from contracts.topology import Topology

PROTOCOL_DOC = "docs/protocol.md"
PROTOCOL_VERSION = "2"
ASYNCAPI_VERSION = "3.0.0"
DEAD_LETTER = "baton.dead_letter"  # the message of every dead-letter queue: any message
CORRELATION = "sagaId"


class _Document:
    """Collects channels and operations; one method per kind of channel."""

    def __init__(self, contracts: Contracts, topology: Topology, broker: amqp.BrokerInfo):
        self.contracts = contracts
        self.topology = topology
        self.broker = broker
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}

    def message(self, channel: str, kind: str) -> dict[str, str]:
        """Put message ``kind`` on ``channel``; the ref an operation of that channel uses."""
        if self.contracts.get(kind) is None:
            raise KeyError(f"{kind!r} is not a registered contract")
        self.channels[channel]["messages"][kind] = ref("components", "messages", kind)
        return ref("channels", channel, "messages", kind)

    def queue(
        self,
        key: str,
        queue: str,
        bound: tuple[str, amqp.ExchangeType, str] | None,
        description: str,
        *,
        dead: bool = False,
    ) -> None:
        self.channels.setdefault(key, {
            "address": queue,
            "description": description,
            "messages": {},
            "bindings": amqp.queue_binding(queue, self.topology, self.broker, bound, dead=dead),
        })  # fmt: skip

    def dead_letter_queue(self, key: str, queue: str, sender: str) -> None:
        """``queue``'s dead-letter queue, and the copy ``sender`` puts there."""
        dead = self.topology.dead_letter_queue(queue)
        dlx = self.topology.dead_letter_exchange
        self.queue(f"dead.{key}", dead, (dlx, "direct", dead),
                   f"What could never be handled from `{queue}`, for an operator "
                   "(`baton dlq`).", dead=True)  # fmt: skip
        self.channels[f"dead.{key}"]["messages"][DEAD_LETTER] = ref(
            "components", "messages", DEAD_LETTER
        )
        self.operations[f"dead.{key}.copy"] = {
            "action": "send",
            "summary": f"{sender} copies a message it can never handle from `{queue}`.",
            "description": "Published to the dead-letter exchange with routing key "
            f"`{dead}`, then the original is acked (docs/protocol.md, Dead letters). "
            "Never answered.",
            "channel": ref("channels", f"dead.{key}"),
            "messages": [ref("channels", f"dead.{key}", "messages", DEAD_LETTER)],
            "bindings": amqp.publish_binding(),
        }

    def fixed_channels(self, saga_names: Iterable[str]) -> None:
        """Start, start answers, replies, events, and the orchestrator's dead letters."""
        t = self.topology
        self.queue("start", t.start_queue, (t.start_exchange, "direct", t.start_queue),
                   "Starts from callers, published to the start exchange "
                   f"`{t.start_exchange}` with routing key `{t.start_queue}`.")  # fmt: skip
        self.channels["start.answer"] = {
            "address": None,
            "description": "The caller's own queue named by the start's AMQP `reply_to` "
            f"property (prefix `{t.reply_prefix}`, or server-named `amq.gen-…`), reached "
            "through the default exchange. Any other `reply_to` gets no answer.",
            "messages": {},
            "bindings": amqp.routing_key_binding("", "default", self.broker),
        }
        self.queue("replies", t.replies_queue, (t.replies_exchange, "direct", t.replies_queue),
                   "Every participant's replies, for the orchestrator; published to "
                   f"`{t.replies_exchange}` with routing key `{t.replies_queue}`.")  # fmt: skip
        self.message("replies", StepFailed.KIND)
        self.channels["events"] = {
            "address": "saga.{saga}.{event}",
            "description": f"Routing keys of the topic exchange `{t.events_exchange}`: "
            "saga lifecycle, for any subscriber (participants need none of it).",
            "parameters": {
                "saga": {
                    "enum": sorted({*saga_names, "unknown"}),
                    "description": "The saga's name (`unknown`: a start for no saga).",
                },
                "event": {"enum": list(get_args(Lifecycle))},
            },
            "messages": {},
            "bindings": amqp.routing_key_binding(t.events_exchange, "topic", self.broker),
        }
        self.dead_letter_queue("start", t.start_queue, "The orchestrator")
        self.dead_letter_queue("replies", t.replies_queue, "The orchestrator")

    def start(self, definition: DefinitionLike) -> None:
        """Receiving a definition's trigger; the final event answers the caller."""
        self.operations[f"{definition.name}.v{definition.version}.start"] = {
            "action": "receive",
            "summary": f"A caller starts saga {definition.name} (v{definition.version} "
            "while it is the newest for this trigger).",
            "channel": ref("channels", "start"),
            "messages": [self.message("start", definition.trigger)],
            "reply": {
                "channel": ref("channels", "start.answer"),
                "messages": [self.message("start.answer", SagaEvent.KIND)],
            },
            "bindings": amqp.publish_binding(reply_to="the caller's queue: the final answer"),
        }

    def command(self, definition: DefinitionLike, step: StepLike) -> None:
        """The step's command and, if it has one, its compensation, each with its reply."""
        t = self.topology
        key = f"cmd.{step.participant}"
        routing: tuple[str, amqp.ExchangeType, str] = (
            t.commands_exchange,
            "direct",
            t.command_routing_key(step.participant),
        )
        self.queue(key, t.command_queue(step.participant), routing,
                   f"Commands for participant `{step.participant}`; its replies go to "
                   f"`{t.replies_queue}`.")  # fmt: skip
        self.dead_letter_queue(key, t.command_queue(step.participant),
                               f"Participant {step.participant}")  # fmt: skip
        where = placement(definition, step)
        for phase, action in (("forward", step.action), ("compensate", step.compensation)):
            if action is None:
                continue
            operation: dict[str, Any] = {
                "action": "send",
                "summary": f"{step.kind} step {step.name} ({phase}) of "
                f"{definition.name} v{definition.version}",
                "description": f"Answered with `{action.reply}`, or `{StepFailed.KIND}` "
                "when the command did not take effect.",
                "channel": ref("channels", key),
                "messages": [self.message(key, action.command)],
                "reply": {
                    "channel": ref("channels", "replies"),
                    "messages": [
                        self.message("replies", action.reply),
                        ref("channels", "replies", "messages", StepFailed.KIND),
                    ],
                },
                "bindings": amqp.publish_binding(),
                **where,
            }
            self.operations[f"{definition.name}.v{definition.version}.{step.name}.{phase}"] = (
                operation
            )

    def events(self) -> None:
        self.operations["events.publish"] = {
            "action": "send",
            "summary": "A saga reached a lifecycle milestone.",
            "channel": ref("channels", "events"),
            "messages": [self.message("events", SagaEvent.KIND)],
            "bindings": amqp.publish_binding(),
        }


# role_of's answer -> the headers such a message carries
_HEADERS_OF: dict[str, HeaderRole] = {
    "start": "start", "command": "command", "reply": "reply", "event": "event"
}  # fmt: skip


def _message(model: type[Contract]) -> dict[str, Any]:
    role = role_of(model)
    headers = _HEADERS_OF[role]
    doc = (model.__doc__ or "").strip()
    message: dict[str, Any] = {
        "name": model.KIND,
        "title": model.__name__,
        "contentType": "application/json",
        "headers": ref("components", "schemas", schema_name(headers)),
        "correlationId": ref("components", "correlationIds", CORRELATION),
        "payload": ref("components", "schemas", model.KIND),
        "bindings": amqp.message_binding(model.KIND),
        "x-baton-role": role,
    }
    if doc:
        message["summary"] = doc.splitlines()[0]
    if model.SENSITIVE:
        message["x-baton-sensitive"] = sorted(model.SENSITIVE)
    return message


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A copy of a message that can never be handled, with the reason.",
        "description": "Body, properties and headers of the original (its `type` and its "
        f"signature too), plus `{env.H_REASON}` and `{env.H_SOURCE_QUEUE}`. The body may "
        f"be anything, sealed whole when `{env.H_SEALED}` is set.",
        "headers": ref("components", "schemas", schema_name("dead_letter")),
        "payload": {"description": "The original body, as it was (or sealed)."},
    }


def _components(contracts: Contracts) -> dict[str, Any]:
    models = list(contracts.models())
    schemas = contract_schemas(models)
    for role in HEADER_ROLES:
        schemas[schema_name(role)] = headers_schema(role)
    messages = {m.KIND: _message(m) for m in models}
    messages[DEAD_LETTER] = _dead_letter_message()
    return {
        "schemas": dict(sorted(schemas.items())),
        "messages": dict(sorted(messages.items())),
        "correlationIds": {
            CORRELATION: {
                "description": "The saga id: the AMQP `correlation_id` property and this header.",
                "location": f"$message.header#/{env.H_SAGA_ID}",
            }
        },
        "securitySchemes": amqp.security_schemes(),
    }


def _info(definitions: Sequence[DefinitionLike]) -> dict[str, Any]:
    sagas = ", ".join(sorted(f"{d.name} v{d.version}" for d in definitions)) or "none"
    return {
        "title": "Baton",
        "version": "1",
        "description": (
            f"Saga orchestration over RabbitMQ: commands, replies, lifecycle events. Sagas: "
            f"{sagas}. Participants follow the participant protocol v{PROTOCOL_VERSION} "
            f"({PROTOCOL_DOC}): effect ids, final outcomes, leases, tombstones, expiry, "
            "signatures, dead letters."
        ),
        # externalDocs would need an absolute URL; the repository path is all we know.
        "x-baton-protocol": {"version": PROTOCOL_VERSION, "document": PROTOCOL_DOC},
    }


def asyncapi_document(
    contracts: Contracts,
    definitions: Iterable[DefinitionLike],
    topology: Topology,
    broker: amqp.BrokerInfo | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document as a dict (``json.dumps`` it); deterministic for its input.

    Raises KeyError when a definition names a kind ``contracts`` does not hold.
    """
    definitions = sorted(definitions, key=lambda d: (d.name, d.version))
    doc = _Document(contracts, topology, broker or amqp.BrokerInfo())
    doc.fixed_channels(d.name for d in definitions)
    for definition in definitions:
        doc.start(definition)
        for step in leaf_steps(definition.steps):
            doc.command(definition, step)
    doc.events()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(definitions),
        "servers": amqp.servers(doc.broker),
        "defaultContentType": "application/json",
        "channels": dict(sorted(doc.channels.items())),
        "operations": dict(sorted(doc.operations.items())),
        "components": _components(contracts),
    }
