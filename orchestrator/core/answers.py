"""What may be read back from an untrusted start message to answer its caller.

A start that started nothing is still answered (docs/protocol.md), so its idempotency key
and ``reply_to`` are read from bytes that failed validation: only in these narrow forms.
"""

from __future__ import annotations

import json
import re

from contracts.pan import contains_pan
from contracts.topology import Topology

# A queue name RabbitMQ would accept and that cannot smuggle anything into a routing key.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,255}")
_MAX_KEY = 200  # contracts.base.Start.idempotency_key's limit
SERVER_NAMED = "amq.gen-"  # the queues RabbitMQ names for a client (exclusive reply queues)


def safe_reply_to(reply_to: str, topology: Topology) -> str:
    """``reply_to`` when it is a plain queue name a caller may own, else "" (no answer).

    Only server-named queues (``amq.gen-…``) and the deployment's reply queues
    (``<ns>baton.reply.…``): the orchestrator publishes answers through the default
    exchange, which reaches every queue by name, so a start must not be able to point it
    at a command queue, the replies queue or another deployment's queues.
    """
    if not _QUEUE_NAME.fullmatch(reply_to):
        return ""
    return reply_to if reply_to.startswith((SERVER_NAMED, topology.reply_prefix)) else ""


def idempotency_key_of(body: bytes) -> str:
    """The idempotency key of a start body that may be invalid, or "" when there is none."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    key = data.get("idempotency_key") if isinstance(data, dict) else None
    if not (isinstance(key, str) and 0 < len(key) <= _MAX_KEY and key.isprintable()):
        return ""
    return "" if contains_pan(key) else key  # an event subscriber's queue would keep it at rest
