"""The SagaStore port on Redis: one EVALSHA per transition, one HGET per load."""

from __future__ import annotations

import asyncio
import heapq
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources
from itertools import islice
from typing import Any

import redis.asyncio as aioredis

from messaging.redis_client import redis_from_url
from messaging.text import as_text
from orchestrator.core.effects import HistoryEntry
from orchestrator.core.state import SagaState, SagaStatus
from orchestrator.runtime.errors import ConcurrencyConflict
from orchestrator.runtime.in_flight import IN_FLIGHT, VersionCounts, count_versions
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.outbox import OutboxEntry
from orchestrator.runtime.script_batch import ScriptBatch
from orchestrator.runtime.sealed_fields import SealedFields

DEFAULT_RETENTION_S = 7 * 24 * 3600
STATUSES = tuple(SagaStatus)  # the order status zsets are passed to the script in
DONE_CHUNK = 1000  # entry ids per outbox_done.lua call (Lua's unpack has a stack limit)
MARKS_RIDE_S = 0.05  # how long done marks wait for a transition's round trip to ride along


@cache
def _script(name: str) -> str:
    """Read once per process, not at import: importing must stay free of side effects."""
    return (resources.files("orchestrator.runtime") / "lua" / name).read_text(encoding="utf-8")


def _score(value: float) -> str:
    return repr(float(value))  # shortest round-trip form: Redis parses it back exactly


class RedisSagaStore:
    """Sagas in Redis, every key of one transition in one shard's hash slot.

    With ``sealed`` (every composition root passes it) sensitive input fields and outbox
    payloads are encrypted before the script writes them and opened after a read; without
    it (tests of other concerns) they are stored as they are.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        shards: int,
        retention_s: int,
        sealed: SealedFields | None = None,
        batch_scripts: bool = True,
    ) -> None:
        """``batch_scripts=False`` sends every script call alone: slower, same results."""
        if retention_s < 1:
            raise ValueError("retention_s must be at least 1")
        self._redis = client
        self._sealed = sealed
        self.keys = KeySpace(namespace, shards)
        self._retention_s = retention_s
        self._scripts = ScriptBatch(
            client,
            {
                name: _script(f"{name}.lua")
                for name in ("transition", "outbox_done", "outbox_claim")
            },
            batched=batch_scripts,
        )

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        *,
        namespace: str,
        shards: int = 16,
        retention_s: int = DEFAULT_RETENTION_S,
        sealed: SealedFields | None = None,
    ) -> AsyncIterator[RedisSagaStore]:
        """A store that owns its client and closes it on exit."""
        client = redis_from_url(url)
        try:
            yield cls(
                client, namespace=namespace, shards=shards, retention_s=retention_s, sealed=sealed
            )
        finally:
            await client.aclose()

    # -- writes -----------------------------------------------------------------------------

    async def create(
        self, state: SagaState, history: Sequence[HistoryEntry], outbox: Sequence[OutboxEntry]
    ) -> bool:
        """Write a new saga at version 1 unless one with its id exists (then False, no write)."""
        written = state.model_copy(update={"version": 1})
        return await self._write(0, written, history, outbox)

    async def commit(
        self,
        expected_version: int,
        state: SagaState,
        history: Sequence[HistoryEntry],
        outbox: Sequence[OutboxEntry],
    ) -> SagaState:
        """Write at expected+1 in one script, or raise ConcurrencyConflict and write nothing."""
        written = state.model_copy(update={"version": expected_version + 1})
        if expected_version < 1:  # stored versions start at 1; 0 tells the script "create"
            raise ConcurrencyConflict(state.saga_id)
        if not await self._write(expected_version, written, history, outbox):
            raise ConcurrencyConflict(state.saga_id)
        return written

    async def _write(
        self,
        expected: int,
        state: SagaState,
        history: Sequence[HistoryEntry],
        outbox: Sequence[OutboxEntry],
    ) -> bool:
        shard = self.keys.shard(state.saga_id)
        keys = [
            self.keys.saga(state.saga_id),
            self.keys.history(state.saga_id),
            self.keys.deadlines(shard),
            self.keys.outbox(shard),
            self.keys.outbox_at(shard),
            *(self.keys.status(shard, status) for status in STATUSES),
        ]
        expires = state.status.expires
        stored = state if self._sealed is None else self._sealed.seal_state(state)
        args: list[str | int] = [
            expected,
            state.version,
            stored.model_dump_json(exclude_defaults=True),  # a pending step is just {}
            state.saga_id,
            state.status.value,
            _score(state.updated_at),
            "" if state.wake_at is None else _score(state.wake_at),
            self._retention_s if expires else 0,
            _score(state.updated_at - self._retention_s),
            *(status.value for status in STATUSES),
            *_history_args(history),
            *_outbox_args(outbox, self._sealed),
        ]
        return bool(await self._scripts.call("transition", keys, args))

    async def outbox_done(self, saga_id: str, entry_ids: Sequence[str]) -> None:
        """Forget one saga's published entries now (one-off callers: operator commands)."""
        await self._forget([(saga_id, entry_ids)], ride_within_s=None)

    async def outbox_done_many(self, done: Iterable[tuple[str, Sequence[str]]]) -> None:
        """Forget many sagas' published entries. Never urgent (a mark only spares the
        sweeper a re-publish), so the calls ride along with the next transitions' round
        trip, or go alone after ``MARKS_RIDE_S``. ``done`` is (saga id, entry ids) pairs."""
        await self._forget(done, ride_within_s=MARKS_RIDE_S)

    async def _forget(
        self, done: Iterable[tuple[str, Sequence[str]]], *, ride_within_s: float | None
    ) -> None:
        """One atomic script call per shard: both keys share the shard's slot (cluster-safe)."""
        by_shard: dict[int, list[str]] = {}
        for saga_id, entry_ids in done:
            by_shard.setdefault(self.keys.shard(saga_id), []).extend(entry_ids)
        await asyncio.gather(
            *(
                self._scripts.call(
                    "outbox_done",
                    (
                        self.keys.outbox(shard),
                        self.keys.outbox_at(shard),
                        self.keys.outbox_claimed(shard),
                    ),
                    ids[i : i + DONE_CHUNK],
                    ride_within_s=ride_within_s,
                )
                for shard, ids in by_shard.items()
                for i in range(0, len(ids), DONE_CHUNK)
            )
        )

    async def postpone(self, saga_id: str, until: float) -> None:
        """Move a saga's wake-up to ``until`` without touching its state (a tick that keeps
        failing backs off this way); a saga no longer waiting stays so."""
        deadlines = self.keys.deadlines(self.keys.shard(saga_id))
        await self._redis.zadd(deadlines, {saga_id: float(until)}, xx=True)

    # -- reads ------------------------------------------------------------------------------

    async def outbox_holds(self, saga_id: str, entry_id: str) -> bool:
        """Whether the entry is still in the outbox (not yet published and marked)."""
        outbox = self.keys.outbox(self.keys.shard(saga_id))
        return bool(await self._redis.hexists(outbox, entry_id))

    async def ping(self) -> bool:
        """Readiness: Redis answers (the health endpoint asks this)."""
        return bool(await self._redis.ping())

    async def load(self, saga_id: str) -> SagaState | None:
        raw = await self._redis.hget(self.keys.saga(saga_id), "state")
        if raw is None:
            return None
        state = SagaState.model_validate_json(raw)
        return state if self._sealed is None else self._sealed.open_state(state)

    async def history(self, saga_id: str) -> list[dict[str, str]]:
        entries = await self._redis.lrange(self.keys.history(saga_id), 0, -1)
        return [dict(zip(HISTORY_FIELDS, json.loads(entry), strict=True)) for entry in entries]

    async def outbox_pending(
        self, enqueued_before: float, limit: int, *, claim: tuple[float, float] | None = None
    ) -> list[OutboxEntry]:
        """Earliest first across shards: one round trip for the ids, one for the payloads.

        With ``claim`` = (now, until) only entries no other sweeper holds a live claim on,
        each claimed until then (one more round trip, per shard in parallel)."""
        keys = [self.keys.outbox_at(shard) for shard in self.keys.all_shards()]
        found = await self._earliest(keys, f"({_score(enqueued_before)}", limit)
        if found and claim is not None:
            found = await self._claim(found, *claim)
        if not found:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, entry_id, shard in found:
                pipe.hget(self.keys.outbox(shard), entry_id)
            payloads: list[Any] = await pipe.execute()
        # an entry marked done between the two round trips is simply gone
        return [
            OutboxEntry.loads(raw if self._sealed is None else self._sealed.open_entry(eid, raw))
            for (_, eid, _), raw in zip(found, payloads, strict=True)
            if raw is not None
        ]

    async def _claim(
        self, found: list[tuple[float, str, int]], now: float, until: float
    ) -> list[tuple[float, str, int]]:
        by_shard: dict[int, list[str]] = {}
        for _, entry_id, shard in found:
            by_shard.setdefault(shard, []).append(entry_id)
        answers = await asyncio.gather(
            *(
                self._scripts.call(
                    "outbox_claim",
                    (self.keys.outbox_claimed(shard),),
                    [_score(now), _score(until), *ids],
                )
                for shard, ids in by_shard.items()
            )
        )
        claimed = {as_text(entry_id) for answer in answers for entry_id in answer}
        return [row for row in found if row[1] in claimed]

    async def outbox_oldest_age(self, now: float) -> float:
        """One pipelined round trip: the lowest enqueue time of each shard's outbox index."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in self.keys.all_shards():
                pipe.zrange(self.keys.outbox_at(shard), 0, 0, withscores=True)
            per_shard: list[list[tuple[bytes | str, float]]] = await pipe.execute()
        oldest = min((rows[0][1] for rows in per_shard if rows), default=None)
        return 0.0 if oldest is None else max(now - oldest, 0.0)

    async def due(self, now: float, limit: int) -> list[str]:
        """Ids of sagas whose ``wake_at`` is at or before ``now``, earliest first."""
        keys = [self.keys.deadlines(shard) for shard in self.keys.all_shards()]
        return [saga_id for _, saga_id, _ in await self._earliest(keys, _score(now), limit)]

    async def by_status(
        self, status: SagaStatus, limit: int, updated_before: float | None = None
    ) -> list[tuple[str, float]]:
        """(saga id, updated_at) of sagas in ``status``, least recently updated first."""
        keys = [self.keys.status(shard, status) for shard in self.keys.all_shards()]
        upper = "+inf" if updated_before is None else f"({_score(updated_before)}"
        return [(saga_id, at) for at, saga_id, _ in await self._earliest(keys, upper, limit)]

    async def counts(self) -> dict[SagaStatus, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for status in STATUSES:
                for shard in self.keys.all_shards():
                    pipe.zcard(self.keys.status(shard, status))
            cards: list[int] = await pipe.execute()
        shards = self.keys.shards
        return {s: sum(cards[i * shards : (i + 1) * shards]) for i, s in enumerate(STATUSES)}

    async def versions(self, statuses: Sequence[SagaStatus] = IN_FLIGHT) -> VersionCounts:
        """Sagas per (definition name, version) and status, from the status indexes."""
        return await count_versions(self._redis, self.keys, statuses)

    async def _earliest(
        self, keys: Sequence[str], upper: str, limit: int
    ) -> list[tuple[float, str, int]]:
        """(score, member, shard) of the lowest-scored members of per-shard zsets, merged."""
        if limit <= 0:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrange(key, "-inf", upper, byscore=True, offset=0, num=limit, withscores=True)
            per_shard: list[list[tuple[bytes | str, float]]] = await pipe.execute()
        # each shard is sorted by (score, member) already, as is the in-memory twin's answer
        merged = heapq.merge(
            *(
                [(score, as_text(member), shard) for member, score in rows]
                for shard, rows in enumerate(per_shard)
            )
        )
        return list(islice(merged, limit))


# History is a list of compact JSON arrays, not a stream: a stream preallocates a node of
# several KB, about five times the size of a finished saga's whole timeline.
HISTORY_FIELDS = ("at", "what", "step", "phase", "attempt", "detail")


def _history_args(history: Sequence[HistoryEntry]) -> Iterable[str | int]:
    yield len(history)
    for entry in history:
        fields = entry.fields()
        yield json.dumps([fields[name] for name in HISTORY_FIELDS], separators=(",", ":"))


def _outbox_args(outbox: Sequence[OutboxEntry], sealed: SealedFields | None) -> Iterable[str | int]:
    yield len(outbox)
    for entry in outbox:
        yield entry.id
        yield entry.dumps() if sealed is None else sealed.seal_entry(entry.id, entry.dumps())
