"""Small helpers the checkout participants share: ids derived from effect ids, script answers."""

from __future__ import annotations

import hashlib
from typing import Any

from messaging.errors import StepRejected

# Refusals and cancellation markers live as long as the SDK keeps outcomes and tombstones.
DEFAULT_TTL_S = 30 * 24 * 3600


def derive_id(prefix: str, effect_id: str) -> str:
    """A short stable id from an effect id, so a repeated command finds the same record."""
    return f"{prefix}_{hashlib.blake2b(effect_id.encode(), digest_size=12).hexdigest()}"


def text(value: Any) -> str:
    """A Redis reply as text (the client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def outcome(result: list[Any]) -> str:
    """The value of an ``{'ok', value}`` script answer; ``{'err', reason}`` raises StepRejected."""
    status, value = text(result[0]), text(result[1])
    if status == "err":
        raise StepRejected(value)
    return value
