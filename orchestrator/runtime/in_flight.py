"""Sagas in flight per definition version, read from the status indexes the store keeps.

Why not a counter per version, kept by the transition script: a saga's keys live in its
shard's slot, so a counter would be one hash per shard, one more write in every transition,
and it could drift from the truth with no way to tell. The indexes are the truth already;
reading them is only needed when an orchestrator starts and when an operator asks
(``baton definitions``), and costs one HGET per unfinished saga, pipelined by pages.

Each index is read with ZSCAN, which returns every member present for the whole scan at least
once even while sagas move (an index range by position would skip some as others leave).
A saga is counted once, under the status its state records; finished ones are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from orchestrator.core.state import SagaStatus
from orchestrator.runtime.keys import KeySpace

# Unfinished: nothing but its own definition version can move it on or compensate it (a
# failed saga waits for an operator, whose retry runs its compensation on that version).
IN_FLIGHT = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED)
PAGE = 500  # saga states read per pipelined round trip

# (definition name, version) -> status -> sagas
VersionCounts = dict[tuple[str, int], dict[SagaStatus, int]]


def tally(counts: VersionCounts, saga: str, version: int, status: SagaStatus) -> None:
    bucket = counts.setdefault((saga, version), {})
    bucket[status] = bucket.get(status, 0) + 1


def describe(by_status: dict[SagaStatus, int]) -> str:
    """``2 running, 1 failed``: in the order of ``SagaStatus``."""
    return ", ".join(f"{by_status[s]} {s.value}" for s in SagaStatus if by_status.get(s))


async def count_versions(
    client: aioredis.Redis,
    keys: KeySpace,
    statuses: Sequence[SagaStatus] = IN_FLIGHT,
    page: int = PAGE,
) -> VersionCounts:
    """Sagas per (definition name, version) and status, for the given statuses."""
    counts: VersionCounts = {}
    seen: set[str] = set()
    for status in statuses:
        for shard in keys.all_shards():
            batch: list[str] = []
            async for member, _ in client.zscan_iter(keys.status(shard, status), count=page):
                saga_id = member.decode() if isinstance(member, bytes) else str(member)
                if saga_id not in seen:
                    seen.add(saga_id)
                    batch.append(saga_id)
                if len(batch) >= page:
                    await _read(client, keys, batch, statuses, counts)
                    batch = []
            await _read(client, keys, batch, statuses, counts)
    return counts


async def _read(
    client: aioredis.Redis,
    keys: KeySpace,
    saga_ids: Iterable[str],
    statuses: Sequence[SagaStatus],
    counts: VersionCounts,
) -> None:
    """Count each saga's state under its own status; its JSON is read, never opened (its
    sealed fields stay sealed: no key is needed)."""
    async with client.pipeline(transaction=False) as pipe:
        for saga_id in saga_ids:
            pipe.hget(keys.saga(saga_id), "state")
        states: list[bytes | str | None] = await pipe.execute()
    for raw in states:
        if raw is None:
            continue  # finished and expired since the index was read
        state = json.loads(raw)
        # stored without defaults: a running saga's state has no "status"
        status = SagaStatus(state.get("status", SagaStatus.RUNNING.value))
        if status in statuses:
            tally(counts, state["saga"], int(state["definition_version"]), status)
