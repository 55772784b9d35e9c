"""The AMQP headers of each kind of message, as JSON Schemas for the AsyncAPI document.

Which header a message must carry, may carry or must not carry is the table "Headers" in
docs/protocol.md; ``tests/unit/test_asyncapi_headers.py`` reads that table and holds these
schemas to it, so the page and the document cannot disagree. Names come from
``contracts/envelope.py`` only.
"""

from __future__ import annotations

from typing import Any, Literal

from contracts import envelope as env

HeaderRole = Literal["command", "reply", "start", "event", "dead_letter"]
HEADER_ROLES: tuple[HeaderRole, ...] = ("command", "reply", "start", "event", "dead_letter")

_ID = {"type": "string", "minLength": 1, "maxLength": 200}
_NAME = {"type": "string", "maxLength": 200}

# What each header holds, whatever message carries it (limits as codec.decode checks them).
HEADER_TYPES: dict[str, dict[str, Any]] = {
    env.H_SAGA_ID: {**_ID, "description": "The saga id; `correlation_id` holds it too."},
    env.H_SAGA: {**_NAME, "description": "The saga's name, e.g. `payment`."},
    env.H_STEP: {**_NAME, "description": "The step's name, e.g. `authorize_payment`."},
    env.H_PHASE: {"type": "string", "enum": ["forward", "compensate"]},
    env.H_EFFECT_ID: {
        **_ID,
        "description": "The effect this command is about: stable across retries, so a "
        "participant stores its outcome under it and deduplicates on it.",
    },
    env.H_COMPENSATES: {
        **_ID,
        "description": "The forward effect id a compensation undoes (its lease subject).",
    },
    env.H_ATTEMPT: {
        "type": "integer",
        "minimum": 0,
        "description": "Changes on every send of one effect; a reply carries its command's.",
    },
    env.H_SCHEMA: {"type": "integer", "const": env.SCHEMA_VERSION},
    env.H_DEADLINE: {
        "type": "number",
        "description": "Epoch seconds (UTC), an AMQP float: past it the command is dropped "
        "unhandled and unanswered (a newer attempt is queued behind it).",
    },
    env.H_SENT_AT: {
        "type": "integer",
        "minimum": 0,
        "description": "Whole epoch seconds the caller sent the start; too old starts nothing.",
    },
    env.H_TRACEPARENT: {"type": "string", "maxLength": 55, "description": "W3C trace context."},
    env.H_SIGNER: {"type": "string", "minLength": 1, "description": "Who signed the message."},
    env.H_KEY_ID: {"type": "string", "minLength": 1, "description": "Which of its keys."},
    env.H_SIGNATURE: {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{86}$",
        "description": "The 64-byte Ed25519 signature, base64url without padding.",
    },
    env.H_REASON: {
        "type": "string",
        "minLength": 1,
        "maxLength": 500,
        "description": "`<reason code>` or `<reason code>: <detail>`.",
    },
    env.H_SOURCE_QUEUE: {
        "type": "string",
        "minLength": 1,
        "description": "The full name of the queue the message was taken from.",
    },
    env.H_SEALED: {
        "type": "string",
        "minLength": 1,
        "description": "The body is sealed (AES-256-GCM) with the key of this id.",
    },
}

_SIGNED = (env.H_SIGNER, env.H_KEY_ID, env.H_SIGNATURE)
_POSITION = (env.H_SAGA_ID, env.H_SAGA, env.H_STEP, env.H_PHASE, env.H_EFFECT_ID, env.H_ATTEMPT)

# (required, optional, absent) per kind of message; docs/protocol.md "Headers" says why.
_HEADERS: dict[HeaderRole, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "command": (
        (*_POSITION, env.H_SCHEMA, env.H_DEADLINE, *_SIGNED),
        (env.H_COMPENSATES, env.H_TRACEPARENT),
        (),
    ),
    "reply": (
        (*_POSITION, env.H_SCHEMA, *_SIGNED),
        (env.H_COMPENSATES, env.H_TRACEPARENT),
        (env.H_DEADLINE,),
    ),
    "start": (_SIGNED, (env.H_SCHEMA, env.H_SENT_AT, env.H_DEADLINE, env.H_TRACEPARENT), ()),
    "event": ((env.H_SAGA_ID, env.H_SAGA, env.H_SCHEMA, *_SIGNED), (env.H_TRACEPARENT,), ()),
    "dead_letter": ((env.H_REASON, env.H_SOURCE_QUEUE), (env.H_SEALED,), ()),
}

_DESCRIPTIONS: dict[HeaderRole, str] = {
    "command": "Sent by the orchestrator and signed by `orchestrator`. A compensation "
    f"(`{env.H_PHASE}: compensate`) carries `{env.H_COMPENSATES}`, a forward command does not.",
    "reply": "Sent by the participant the step names, signed with its own key, with the "
    "command's saga id, saga, step, phase, effect id and attempt; never a deadline.",
    "start": "Sent by an upstream caller, signed with its key (a signer in "
    "BATON_SIGNING__UPSTREAMS); the other envelope headers of a start are ignored.",
    "event": "Lifecycle events and final answers, signed by `orchestrator`.",
    "dead_letter": "Every header and property of the original message, plus these.",
}


def header_names(role: HeaderRole) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(required, optional, absent) header names of one kind of message."""
    return _HEADERS[role]


def headers_schema(role: HeaderRole) -> dict[str, Any]:
    """The JSON Schema of the AMQP header table of one kind of message.

    Headers not listed are allowed (a dead-letter copy keeps the original's; producers may
    add some), which is why absent ones are spelled out with ``not required``.
    """
    required, optional, absent = _HEADERS[role]
    schema: dict[str, Any] = {
        "type": "object",
        "description": _DESCRIPTIONS[role],
        "properties": {name: HEADER_TYPES[name] for name in (*required, *optional)},
        "required": list(required),
    }
    if role in ("command", "event"):
        schema["properties"][env.H_SIGNER] = {**HEADER_TYPES[env.H_SIGNER], "const": "orchestrator"}
    if absent:
        schema["not"] = {"anyOf": [{"required": [name]} for name in absent]}
    if role == "command":
        schema["if"] = {
            "properties": {env.H_PHASE: {"const": "compensate"}},
            "required": [env.H_PHASE],
        }
        schema["then"] = {"required": [env.H_COMPENSATES]}
        schema["else"] = {"not": {"required": [env.H_COMPENSATES]}}
    return schema


def schema_name(role: HeaderRole) -> str:
    """Key of the headers schema in ``components/schemas``: dotted, so never a model's name."""
    return f"baton.headers.{role}"
