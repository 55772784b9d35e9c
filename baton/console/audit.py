"""A saga's audit trail, as the console shows it: the hash-chained entries ``baton retry``,
``resume`` and ``abort`` append (``orchestrator.runtime.audit_store``), each with whether
the chain holds up to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from orchestrator.runtime.audit_store import AuditStore
from orchestrator.runtime.keys import KeySpace


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to the saga, when, why, and what came of it."""

    at: float
    action: str  # retry | resume | abort
    actor: str
    note: str  # the reason given
    result: str = ""  # applied | ignored | refused
    seq: int = 0
    intact: bool = True  # the chain holds up to and including this entry


async def audit_entries(
    client: aioredis.Redis,
    namespace: str,
    saga_id: str,
    shards: int,
) -> list[AuditEntry]:
    """The saga's audit trail, oldest first; entries from the first broken one on are
    marked not intact (``baton audit`` names what is wrong)."""
    trail = await AuditStore(client, KeySpace(namespace, shards)).trail(saga_id)
    broken_from = trail.verdict.position if not trail.verdict.intact else 0
    return [
        AuditEntry(e.at, e.action, e.actor, e.reason, e.result, e.seq,
                   intact=not broken_from or position < broken_from)
        for position, e in enumerate(trail.entries, start=1)
    ]  # fmt: skip
