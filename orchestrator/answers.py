"""What may be read back from an untrusted start message to answer its caller.

A start that started nothing is still answered (docs/protocol.md), so its idempotency key
and ``reply_to`` are read from bytes that failed validation: only in these narrow forms.
"""

from __future__ import annotations

import json
import re

# A queue name RabbitMQ would accept and that cannot smuggle anything into a routing key.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,255}")
_MAX_KEY = 200  # contracts.base.Start.idempotency_key's limit


def safe_reply_to(reply_to: str) -> str:
    """``reply_to`` when it is a plain queue name, else "" (no answer is sent there)."""
    return reply_to if _QUEUE_NAME.fullmatch(reply_to) else ""


def idempotency_key_of(body: bytes) -> str:
    """The idempotency key of a start body that may be invalid, or "" when there is none."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    key = data.get("idempotency_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and 0 < len(key) <= _MAX_KEY and key.isprintable() else ""
