"""An AsyncAPI 3.0 document of the whole topology, generated from contracts and definitions.

Each step's command is an operation on its participant's command queue whose reply (the
success reply or StepFailed) comes on the replies queue; compensations likewise. Schemas
are the contracts' own JSON Schemas, so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts import envelope as env
from contracts.base import Contract, StepFailed
from contracts.events import SagaEvent
from contracts.registry import CONTRACTS, contract_for
from contracts.topology import Topology
from orchestrator.catalog import Catalog
from orchestrator.definition import Action

REF = "#/components/schemas/{model}"
# What a participant must do with these messages: the document describes shapes, not behaviour.
PROTOCOL_DOC = "docs/protocol.md"
PROTOCOL_VERSION = "2"

_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        env.H_SAGA_ID: {"type": "string", "description": "saga id (also the correlation id)"},
        env.H_SAGA: {"type": "string"},
        env.H_STEP: {"type": "string"},
        env.H_PHASE: {"type": "string", "enum": ["forward", "compensate"]},
        env.H_EFFECT_ID: {"type": "string", "description": "stable across retries: dedupe on it"},
        env.H_COMPENSATES: {
            "type": "string",
            "description": "forward effect a compensation undoes",
        },
        env.H_ATTEMPT: {"type": "integer", "description": "changes on every retry"},
        env.H_SCHEMA: {"type": "integer", "const": env.SCHEMA_VERSION},
        env.H_DEADLINE: {"type": "number", "description": "epoch seconds"},
        env.H_TRACEPARENT: {"type": "string", "description": "W3C trace context"},
        env.H_SIGNER: {"type": "string", "description": "who signed it (docs/protocol.md)"},
        env.H_KEY_ID: {"type": "string", "description": "which of the signer's keys"},
        env.H_SIGNATURE: {
            "type": "string",
            "description": "Ed25519 signature, base64url without padding",
        },
    },
    "required": [env.H_SIGNER, env.H_KEY_ID, env.H_SIGNATURE],
}


def contract_schemas() -> dict[str, Any]:
    """JSON Schema of every contract, keyed by model name, refs pointing into components."""
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (model, "validation") for model in CONTRACTS.values()
    ]
    _, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas


def _message(model: type[Contract]) -> dict[str, Any]:
    return {
        "name": model.KIND,
        "title": model.__name__,
        "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
        "contentType": "application/json",
        "headers": _HEADERS,
        "payload": {"$ref": REF.format(model=model.__name__)},
    }


def _ref(kind: str) -> dict[str, str]:
    model = contract_for(kind)
    assert model is not None  # definitions are checked against the registry on load
    return {"$ref": f"#/components/messages/{model.__name__}"}


def _operation(action: Action, channel: str, summary: str) -> dict[str, Any]:
    return {
        "action": "send",
        "summary": summary,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{action.command}"}],
        "reply": {
            "channel": {"$ref": "#/channels/replies"},
            "messages": [
                {"$ref": f"#/channels/replies/messages/{action.reply}"},
                {"$ref": f"#/channels/replies/messages/{StepFailed.KIND}"},
            ],
        },
    }


def asyncapi(catalog: Catalog, topology: Topology) -> dict[str, Any]:
    """The document as a dict (serialise with json.dumps)."""
    channels: dict[str, Any] = {
        "replies": {"address": topology.replies_queue, "messages": {}},
        "events": {
            "address": topology.events_exchange,
            "messages": {SagaEvent.KIND: _ref(SagaEvent.KIND)},
        },
        "start": {"address": topology.start_queue, "messages": {}},
    }
    operations: dict[str, Any] = {}
    channels["replies"]["messages"][StepFailed.KIND] = _ref(StepFailed.KIND)
    for definition in catalog.all():
        channels["start"]["messages"][definition.trigger] = _ref(definition.trigger)
        for step in definition.steps:
            channel = f"cmd.{step.participant}"
            messages = channels.setdefault(
                channel, {"address": topology.command_queue(step.participant), "messages": {}}
            )["messages"]
            for phase, action in (("forward", step.action), ("compensate", step.compensation)):
                if action is None:
                    continue
                messages[action.command] = _ref(action.command)
                channels["replies"]["messages"][action.reply] = _ref(action.reply)
                name = f"{definition.name}.v{definition.version}.{step.name}.{phase}"
                summary = f"{step.kind} step {step.name} ({phase}) of {definition.name}"
                operations[name] = _operation(action, channel, summary)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Baton",
            "version": "1",
            "description": (
                "Saga orchestration over RabbitMQ: commands, replies, lifecycle events. "
                f"Participants follow the participant protocol v{PROTOCOL_VERSION} "
                f"({PROTOCOL_DOC}): effect ids, final outcomes, leases, tombstones, expiry, "
                "dead letters."
            ),
            # externalDocs would need an absolute URL; the repository path is all we know.
            "x-baton-protocol": {"version": PROTOCOL_VERSION, "document": PROTOCOL_DOC},
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {m.__name__: _message(m) for m in CONTRACTS.values()},
            "schemas": contract_schemas(),
        },
    }
