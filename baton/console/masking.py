"""What the console shows of a saga's data: sensitive fields masked, never unsealed.

The console reads the store as it is written, without the sealing key: a sensitive input
field is a sealed value there, and is shown as ``***`` like any field the saga's contracts
mark sensitive (by name, so a record stored before sealing is masked too). Card numbers in
any remaining text are masked by ``contracts.pan``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.pan import mask_pans
from messaging.trust.sealing import is_sealed

MASK = "***"


def masked_value(value: Any) -> Any:
    """A value as shown: sealed values masked, card numbers in text masked, recursively."""
    if is_sealed(value):
        return MASK
    if isinstance(value, str):
        return mask_pans(value)
    if isinstance(value, Mapping):
        return {str(k): masked_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked_value(v) for v in value]
    return value


def masked_fields(data: Mapping[str, Any], hidden: frozenset[str] | None) -> dict[str, Any]:
    """``data`` with the ``hidden`` fields masked; ``hidden`` None (nothing says which are
    sensitive: the saga's definition is neither registered nor loaded) masks every field."""
    return {
        name: MASK if hidden is None or name in hidden else masked_value(value)
        for name, value in data.items()
    }


def masked_text(text: str, secrets: list[str]) -> str:
    """Free text (a reason, a history detail) with card numbers and the saga's own clear
    sensitive values masked (a record written before sealing may hold them)."""
    text = mask_pans(text)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def clear_secrets(data: Mapping[str, Any], hidden: frozenset[str] | None) -> list[str]:
    """The sensitive values of ``data`` stored in clear, long enough to search text for."""
    return [
        str(v)
        for k, v in data.items()
        if (hidden is None or k in hidden) and not is_sealed(v) and len(str(v)) >= 4
    ]
