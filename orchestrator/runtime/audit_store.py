"""The audit trail on Redis: a per-saga append-only list in the saga's own hash slot, its
head beside it, and a per-shard count of operator actions for the metric.

The chain itself (canonical form, hash, verification) is ``orchestrator.core.audit``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from messaging.errors import BatonError
from messaging.redis_client import redis_from_url
from messaging.text import as_text
from orchestrator.core.audit import AuditEntry, Head, Verdict, dumps, loads, next_entry, verify
from orchestrator.runtime.keys import KeySpace

MAX_RACES = 50  # appends lost to another operator before giving up


@cache
def _append_script() -> str:
    """Read on first use, not at import: importing must stay free of side effects."""
    lua = resources.files("orchestrator.runtime") / "lua" / "audit_append.lua"
    return lua.read_text(encoding="utf-8")


class AuditTrailBroken(BatonError):
    """The trail's head is gone while entries remain: appending would start a second chain."""


@dataclass(frozen=True, slots=True)
class Trail:
    """A saga's entries as read (unreadable ones left out) and the verdict on the chain."""

    entries: list[AuditEntry]
    verdict: Verdict


class AuditStore:
    """Appends and reads audit trails; counts operator actions per (action, result)."""

    def __init__(self, client: aioredis.Redis, keys: KeySpace) -> None:
        self._redis = client
        self.keys = keys
        self._append = client.register_script(_append_script())

    @property
    def client(self) -> aioredis.Redis:
        """The client it reads with, for readers of the same namespace (bulk's indexes)."""
        return self._redis

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, *, namespace: str, shards: int) -> AsyncIterator[AuditStore]:
        """A store that owns its client and closes it on exit."""
        client = redis_from_url(url, socket_connect_timeout=10)
        try:
            yield cls(client, KeySpace(namespace, shards))
        finally:
            await client.aclose()

    async def append(self, saga_id: str, **fields: Any) -> AuditEntry:
        """Append after the current tail; re-hash and try again when another append won.
        ``fields``: at, action, actor, reason, result, detail, batch_id."""
        keys = [
            self.keys.audit(saga_id),
            self.keys.audit_head(saga_id),
            self.keys.operator_actions(self.keys.shard(saga_id)),
        ]
        counter = f"{fields['action']}:{fields['result']}"
        for _ in range(MAX_RACES):
            raw = await self._redis.get(keys[1])
            expected = as_text(raw) if raw is not None else ""
            entry = next_entry(Head.loads(expected), saga_id=saga_id, **fields)
            head = Head(entry.seq, entry.hash).dumps()
            args = [expected, dumps(entry), head, counter]
            written = int(await self._append(keys=keys, args=args))
            if written == 1:
                return entry
            if written == -1:
                raise AuditTrailBroken(
                    f"the audit trail of {saga_id} lost its head: run `baton audit {saga_id}`"
                )
        raise AuditTrailBroken(f"the audit trail of {saga_id} kept moving: try again")

    async def trail(self, saga_id: str) -> Trail:
        """Every entry, oldest first, and whether the chain (and its head) holds."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self.keys.audit(saga_id), 0, -1)
            pipe.get(self.keys.audit_head(saga_id))
            raws, head = await pipe.execute()
        try:
            tail = Head.loads(as_text(head)) if head is not None else None
        except ValueError:  # the head itself was written over: the trail cannot be trusted
            verdict = Verdict(False, 0, 1, "edited", "the trail's head is not seq:hash")
        else:
            verdict = verify(saga_id, raws, tail)
        entries = []
        for raw in raws:
            try:
                entries.append(loads(raw))
            except ValueError:
                continue
        return Trail(entries, verdict)

    async def counts(self) -> dict[tuple[str, str], int]:
        """Operator actions by (action, result), summed over shards: one pipelined read."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self.keys.all_shards():
                pipe.hgetall(self.keys.operator_actions(shard))
            per_shard: list[dict[bytes | str, bytes | str]] = await pipe.execute()
        totals: dict[tuple[str, str], int] = {}
        for counts in per_shard:
            for field, value in counts.items():
                action, _, result = as_text(field).partition(":")
                totals[action, result] = totals.get((action, result), 0) + int(value)
        return totals
