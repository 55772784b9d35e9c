"""A saga's audit trail, as the console shows it.

For now the trail is the saga's own history entries of kind operator action
(``operator_retry``, ``operator_resume``, ``operator_abort``: actor and note in the detail).
A Redis-backed hash chain is being built to replace it; ``audit_entries`` is the one function
to swap then, which is why it is async and is given the Redis client and namespace it does
not use yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

OPERATOR_PREFIX = "operator_"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to the saga, when, and why."""

    at: float
    action: str  # retry | resume | abort
    actor: str
    note: str


def _entry(history_entry: Mapping[str, str]) -> AuditEntry:
    actor, _, note = history_entry["detail"].partition(": ")
    return AuditEntry(
        float(history_entry["at"]), history_entry["what"].removeprefix(OPERATOR_PREFIX),
        actor, note,
    )  # fmt: skip


async def audit_entries(
    client: aioredis.Redis,  # unused until the hash-chain trail replaces this
    namespace: str,
    saga_id: str,
    history: Sequence[Mapping[str, str]],
) -> list[AuditEntry]:
    """The saga's audit trail, oldest first: its operator-action history entries."""
    return [_entry(e) for e in history if e["what"].startswith(OPERATOR_PREFIX)]
