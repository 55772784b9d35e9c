"""The SagaStore contract, run against the in-memory twin and the real Redis store."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from messaging.transport.codec import Wire
from orchestrator.core.effects import HistoryEntry
from orchestrator.core.state import SagaState, SagaStatus, StepRecord
from orchestrator.runtime.errors import ConcurrencyConflict
from orchestrator.runtime.keys import KeySpace
from orchestrator.runtime.outbox import OutboxEntry
from orchestrator.runtime.redis_store import RedisSagaStore
from orchestrator.runtime.store import InMemorySagaStore, SagaStore
from tests.conftest import delete_keys

SHARDS = 4  # more than one, so every cross-shard merge is exercised
RETENTION_S = 3600


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def store(
    request: pytest.FixtureRequest, redis_url: str, namespace: str
) -> AsyncIterator[SagaStore]:
    if request.param == "memory":
        yield InMemorySagaStore()
        return
    client = aioredis.Redis.from_url(redis_url)
    await client.ping()  # a missing Redis fails the test; it never skips
    try:
        yield RedisSagaStore(client, namespace=namespace, shards=SHARDS, retention_s=RETENTION_S)
    finally:
        await delete_keys(client, namespace)
        await client.aclose()


@pytest.fixture
def redis_store(redis_client: aioredis.Redis, namespace: str) -> RedisSagaStore:
    return RedisSagaStore(redis_client, namespace=namespace, shards=SHARDS, retention_s=RETENTION_S)


def a_state(
    saga_id: str,
    *,
    status: SagaStatus = SagaStatus.RUNNING,
    updated_at: float = 100.0,
    wake_at: float | None = None,
    version: int = 0,
) -> SagaState:
    return SagaState(
        saga_id=saga_id,
        saga="payment",
        definition_version=1,
        status=status,
        version=version,
        input={"amount": {"minor": 500, "currency": "EUR"}},
        steps={"authorize_payment": StepRecord()},
        started_at=100.0,
        updated_at=updated_at,
        wake_at=wake_at,
    )


def an_entry(entry_id: str, saga_id: str) -> OutboxEntry:
    wire = Wire(
        body=b'{"account_id":"acct-1"}',
        kind="payments.authorize_payment.v1",
        message_id=entry_id,
        correlation_id=saga_id,
        headers={"x-saga-id": saga_id, "x-attempt": 1},
    )
    return OutboxEntry(entry_id, saga_id, "baton.commands", "payment", wire)


def a_line(what: str, at: float = 100.0) -> HistoryEntry:
    return HistoryEntry(at=at, what=what, step="authorize_payment", phase="forward", attempt=1)


async def snapshot(store: SagaStore, *saga_ids: str) -> dict[str, Any]:
    """Everything the port can tell about some sagas, to prove a write changed nothing."""
    return {
        "states": [await store.load(s) for s in saga_ids],
        "history": [await store.history(s) for s in saga_ids],
        "outbox": await store.outbox_pending(math.inf, 100),
        "due": await store.due(math.inf, 100),
        "by_status": [await store.by_status(s, 100) for s in SagaStatus],
        "counts": await store.counts(),
    }


async def test_create_writes_version_one_and_is_idempotent(store: SagaStore) -> None:
    created = await store.create(
        a_state("s1", wake_at=130.0), [a_line("started")], [an_entry("m1", "s1")]
    )
    assert created is True
    loaded = await store.load("s1")
    assert loaded == a_state("s1", wake_at=130.0, version=1)
    before = await snapshot(store, "s1")

    other = a_state("s1", status=SagaStatus.COMPENSATING, updated_at=200.0, wake_at=150.0)
    again = await store.create(other, [a_line("started again")], [an_entry("m2", "s1")])

    assert again is False
    assert await snapshot(store, "s1") == before


async def test_load_unknown_saga_is_none(store: SagaStore) -> None:
    assert await store.load("nope") is None
    assert await store.history("nope") == []


async def test_commit_bumps_the_version_and_returns_what_it_wrote(store: SagaStore) -> None:
    await store.create(a_state("s1"), [], [])

    second = await store.commit(1, a_state("s1", updated_at=110.0), [], [])
    third = await store.commit(2, a_state("s1", updated_at=120.0), [], [])

    assert second.version == 2
    assert third == a_state("s1", updated_at=120.0, version=3)
    assert await store.load("s1") == third


async def test_commit_with_a_stale_version_raises_and_writes_nothing(store: SagaStore) -> None:
    await store.create(a_state("s1", wake_at=130.0), [a_line("started")], [an_entry("m1", "s1")])
    await store.commit(1, a_state("s1", updated_at=110.0, wake_at=140.0), [a_line("sent")], [])
    before = await snapshot(store, "s1")

    stale = a_state("s1", status=SagaStatus.COMPENSATING, updated_at=120.0, wake_at=None)
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.commit(1, stale, [a_line("compensating")], [an_entry("m2", "s1")])

    assert caught.value.saga_id == "s1"
    assert await snapshot(store, "s1") == before


async def test_commit_of_an_unknown_saga_raises_and_creates_nothing(store: SagaStore) -> None:
    for expected in (0, 1):
        with pytest.raises(ConcurrencyConflict):
            await store.commit(expected, a_state("ghost"), [a_line("x")], [an_entry("m", "ghost")])

    assert await snapshot(store, "ghost") == await snapshot(InMemorySagaStore(), "ghost")


async def test_outbox_entries_are_pending_until_done(store: SagaStore) -> None:
    await store.create(
        a_state("s1", updated_at=100.0), [], [an_entry("b", "s1"), an_entry("a", "s1")]
    )
    await store.create(a_state("s2", updated_at=90.0), [], [an_entry("c", "s2")])
    await store.commit(1, a_state("s1", updated_at=200.0), [], [an_entry("d", "s1")])

    assert [e.id for e in await store.outbox_pending(math.inf, 10)] == ["c", "a", "b", "d"]
    assert [e.id for e in await store.outbox_pending(200.0, 10)] == [
        "c",
        "a",
        "b",
    ]  # strictly before
    assert [e.id for e in await store.outbox_pending(math.inf, 2)] == ["c", "a"]
    assert (await store.outbox_pending(math.inf, 10))[0] == an_entry("c", "s2")

    await store.outbox_done("s1", ["a", "d", "never-existed"])
    await store.outbox_done("s2", [])

    assert [e.id for e in await store.outbox_pending(math.inf, 10)] == ["c", "b"]


async def test_outbox_oldest_age_is_the_age_of_the_oldest_unsent_entry(store: SagaStore) -> None:
    assert await store.outbox_oldest_age(500.0) == 0.0  # empty outbox: no lag
    await store.create(a_state("s1", updated_at=100.0), [], [an_entry("a", "s1")])
    await store.create(a_state("s2", updated_at=90.0), [], [an_entry("c", "s2")])

    assert await store.outbox_oldest_age(130.0) == pytest.approx(40.0)  # "c", across shards
    assert await store.outbox_oldest_age(50.0) == 0.0  # a clock behind the entries: never < 0

    await store.outbox_done("s2", ["c"])
    assert await store.outbox_oldest_age(130.0) == pytest.approx(30.0)
    await store.outbox_done("s1", ["a"])
    assert await store.outbox_oldest_age(130.0) == 0.0


async def test_due_follows_wake_at(store: SagaStore) -> None:
    for saga_id, wake_at in [("a", 10.0), ("b", 20.0), ("c", None), ("d", 20.0), ("e", 5.0)]:
        await store.create(a_state(saga_id, wake_at=wake_at), [], [])

    assert await store.due(15.0, 10) == ["e", "a"]
    assert await store.due(20.0, 10) == ["e", "a", "b", "d"]  # at or before; ties by id
    assert await store.due(20.0, 3) == ["e", "a", "b"]
    assert await store.due(4.0, 10) == []

    await store.commit(1, a_state("b", wake_at=None), [], [])  # waits for a reply only
    await store.commit(1, a_state("a", wake_at=30.0), [], [])

    assert await store.due(25.0, 10) == ["e", "d"]
    assert await store.due(math.inf, 10) == ["e", "d", "a"]


async def test_by_status_and_counts_follow_status_moves(store: SagaStore) -> None:
    for saga_id, at in [("x", 130.0), ("y", 110.0), ("z", 120.0)]:
        await store.create(a_state(saga_id, updated_at=at), [], [])

    assert await store.by_status(SagaStatus.RUNNING, 10) == [
        ("y", 110.0),
        ("z", 120.0),
        ("x", 130.0),
    ]
    assert await store.by_status(SagaStatus.RUNNING, 10, updated_before=120.0) == [("y", 110.0)]
    assert await store.by_status(SagaStatus.RUNNING, 2) == [("y", 110.0), ("z", 120.0)]

    await store.commit(1, a_state("y", status=SagaStatus.COMPENSATING, updated_at=140.0), [], [])
    await store.commit(2, a_state("y", status=SagaStatus.FAILED, updated_at=150.0), [], [])
    await store.commit(1, a_state("x", status=SagaStatus.COMPLETED, updated_at=160.0), [], [])
    await store.commit(1, a_state("z", updated_at=170.0), [], [])  # same status, newer

    assert await store.by_status(SagaStatus.RUNNING, 10) == [("z", 170.0)]
    assert await store.by_status(SagaStatus.COMPENSATING, 10) == []
    assert await store.by_status(SagaStatus.FAILED, 10) == [("y", 150.0)]
    assert await store.by_status(SagaStatus.COMPLETED, 10) == [("x", 160.0)]
    assert await store.counts() == {
        SagaStatus.RUNNING: 1,
        SagaStatus.COMPENSATING: 0,
        SagaStatus.COMPLETED: 1,
        SagaStatus.COMPENSATED: 0,
        SagaStatus.FAILED: 1,
    }


async def test_history_is_appended_in_order(store: SagaStore) -> None:
    first = [a_line("started", 100.0), a_line("sent", 100.5)]
    then = [a_line("replied", 101.0), a_line("completed", 101.25)]
    await store.create(a_state("s1"), first, [])
    await store.commit(1, a_state("s1", status=SagaStatus.COMPLETED), then, [])
    await store.commit(2, a_state("s1", status=SagaStatus.COMPLETED), [], [])

    assert await store.history("s1") == [h.fields() for h in first + then]


async def test_concurrent_commits_of_one_version_have_one_winner(store: SagaStore) -> None:
    await store.create(a_state("s1"), [a_line("started")], [])

    async def attempt(n: int) -> SagaState:
        state = a_state("s1", updated_at=100.0 + n)
        return await store.commit(1, state, [a_line(f"writer {n}")], [an_entry(f"m{n}", "s1")])

    results = await asyncio.gather(*(attempt(n) for n in range(10)), return_exceptions=True)

    winners = [r for r in results if isinstance(r, SagaState)]
    assert len(winners) == 1
    assert len([r for r in results if isinstance(r, ConcurrencyConflict)]) == 9
    assert await store.load("s1") == winners[0]
    assert len(await store.history("s1")) == 2
    assert len(await store.outbox_pending(math.inf, 100)) == 1


# -- Redis only -------------------------------------------------------------------------------


@pytest.mark.integration
async def test_stored_hash_carries_version_and_status(
    redis_store: RedisSagaStore, redis_client: aioredis.Redis
) -> None:
    await redis_store.create(a_state("s1"), [], [])
    await redis_store.commit(1, a_state("s1", status=SagaStatus.COMPENSATING), [], [])

    stored = await redis_client.hgetall(redis_store.keys.saga("s1"))

    assert stored[b"version"] == b"2"
    assert stored[b"status"] == b"compensating"
    assert json.loads(stored[b"state"])["version"] == 2


@pytest.mark.integration
@pytest.mark.parametrize("status", [SagaStatus.COMPLETED, SagaStatus.COMPENSATED])
async def test_finished_sagas_start_the_retention_clock(
    redis_store: RedisSagaStore, redis_client: aioredis.Redis, status: SagaStatus
) -> None:
    keys = redis_store.keys
    await redis_store.create(a_state("s1"), [a_line("started")], [])
    assert await redis_client.ttl(keys.saga("s1")) == -1
    assert await redis_client.ttl(keys.history("s1")) == -1

    await redis_store.commit(1, a_state("s1", status=status), [a_line("done")], [])

    assert 0 < await redis_client.ttl(keys.saga("s1")) <= RETENTION_S
    assert 0 < await redis_client.ttl(keys.history("s1")) <= RETENTION_S

    await redis_client.expire(keys.saga("s1"), 100)  # later writes keep the clock running
    await redis_store.commit(2, a_state("s1", status=status), [a_line("noted")], [])
    assert 0 < await redis_client.ttl(keys.saga("s1")) <= 100


@pytest.mark.integration
@pytest.mark.parametrize("status", [SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED])
async def test_unfinished_or_failed_sagas_never_expire(
    redis_store: RedisSagaStore, redis_client: aioredis.Redis, status: SagaStatus
) -> None:
    await redis_store.create(a_state("s1"), [a_line("started")], [])
    await redis_store.commit(1, a_state("s1", status=status), [a_line("moved")], [])

    assert await redis_client.ttl(redis_store.keys.saga("s1")) == -1
    assert await redis_client.ttl(redis_store.keys.history("s1")) == -1


@pytest.mark.integration
async def test_finished_status_index_is_trimmed_past_retention(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    # one shard, so both sagas share the status zset that a completion trims
    store = RedisSagaStore(redis_client, namespace=namespace, shards=1, retention_s=RETENTION_S)
    for saga_id, at in [("old", 100.0), ("new", 100.0 + RETENTION_S + 1)]:
        await store.create(a_state(saga_id), [], [])
        await store.commit(1, a_state(saga_id, status=SagaStatus.COMPLETED, updated_at=at), [], [])

    assert await store.by_status(SagaStatus.COMPLETED, 10) == [("new", 100.0 + RETENTION_S + 1)]
    assert (await store.counts())[SagaStatus.COMPLETED] == 1


@pytest.mark.integration
async def test_every_key_of_a_transition_shares_one_hash_slot(
    redis_store: RedisSagaStore, redis_client: aioredis.Redis, namespace: str
) -> None:
    for n in range(20):
        saga_id = f"saga-{n}"
        keys = redis_store.keys
        shard = keys.shard(saga_id)
        names = [
            keys.saga(saga_id),
            keys.history(saga_id),
            keys.deadlines(shard),
            keys.outbox(shard),
            keys.outbox_at(shard),
            *(keys.status(shard, s) for s in SagaStatus),
        ]
        assert {key_slot(name.encode()) for name in names} == {key_slot(f"{{s{shard}}}".encode())}
        assert all(name.startswith(f"{namespace}baton:{{s{shard}}}:") for name in names)

    await redis_store.create(a_state("s1", wake_at=5.0), [a_line("x")], [an_entry("m1", "s1")])
    written = [key async for key in redis_client.scan_iter(match=f"{namespace}*")]
    assert len(written) == 6  # saga, history, deadlines, outbox, outbox:at, status:running
    assert len({key_slot(key) for key in written}) == 1


def test_keyspace_refuses_a_namespace_that_would_move_the_hash_tag() -> None:
    with pytest.raises(ValueError, match="braces"):
        KeySpace("team{a}.", 4)
    with pytest.raises(ValueError, match="shards"):
        KeySpace("ok.", 0)


@pytest.mark.integration
async def test_connect_owns_and_closes_its_client(
    redis_url: str, namespace: str, redis_client: aioredis.Redis
) -> None:
    async with RedisSagaStore.connect(redis_url, namespace=namespace, shards=2) as store:
        assert await store.create(a_state("s1"), [], []) is True
        assert await store.load("s1") == a_state("s1", version=1)


async def test_a_claimed_outbox_entry_is_swept_by_one_sweeper_until_its_claim_lapses(
    store: SagaStore,
) -> None:
    """All three replicas swept the same 235 entries after a restart (fault suite)."""
    await store.create(a_state("s1"), [], [an_entry("a", "s1")])
    first = await store.outbox_pending(math.inf, 10, claim=(1000.0, 1002.0))
    second = await store.outbox_pending(math.inf, 10, claim=(1001.0, 1003.0))
    lapsed = await store.outbox_pending(math.inf, 10, claim=(1002.5, 1004.5))
    assert [e.id for e in first] == ["a"]
    assert second == []  # another sweeper holds it
    assert [e.id for e in lapsed] == ["a"]  # its sweeper died: swept again
    await store.outbox_done("s1", ["a"])
    assert await store.outbox_pending(math.inf, 10, claim=(2000.0, 2002.0)) == []
