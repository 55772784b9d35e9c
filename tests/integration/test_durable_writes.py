"""Durable writes against a real server: a write no replica acknowledges is never taken as
done, whether WAIT answers short or the primary refuses it (``min-replicas-to-write``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from messaging.durable_writes import Durability, NotDurable
from messaging.redis_client import redis_from_url
from messaging.transport.poison import counts_as_poison
from orchestrator.runtime.script_batch import ScriptBatch
from tests.fault.services import RedisServer

WRITE = "redis.call('SET', KEYS[1], ARGV[1]) return 1"


@pytest.fixture(scope="module")
def refusing() -> Iterator[RedisServer]:
    """A primary that refuses writes while fewer than one replica is connected (none is)."""
    server = RedisServer("--min-replicas-to-write", "1")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def lone() -> AsyncIterator[Redis]:
    """A primary without replicas whose client asks WAIT for one (50 ms)."""
    server = RedisServer()
    server.start()
    client = redis_from_url(server.url, Durability(replicas=1, timeout_ms=50))
    try:
        yield client
    finally:
        await client.aclose()
        server.close()


async def test_a_write_the_primary_refuses_for_want_of_replicas_is_not_durable(
    refusing: RedisServer,
) -> None:
    client = redis_from_url(refusing.url)  # no WAIT asked: the server's own rule refuses
    try:
        script = client.register_script(WRITE)
        with pytest.raises(NotDurable) as refused:
            await script(keys=["k"], args=["1"])
        assert not counts_as_poison(refused.value)  # redelivered, never dead-lettered
        batch = ScriptBatch(client, {"write": WRITE})
        answers = await asyncio.gather(
            batch.call("write", ["a"], ["1"]), batch.call("write", ["b"], ["1"]),
            return_exceptions=True,
        )  # fmt: skip
        assert all(isinstance(a, NotDurable) for a in answers), answers
        assert await client.exists("k", "a", "b") == 0
    finally:
        await client.aclose()


async def test_a_write_wait_finds_on_no_replica_is_not_durable_alone_or_batched(
    lone: Redis,
) -> None:
    script = lone.register_script(WRITE)
    with pytest.raises(NotDurable, match="0 of 1"):
        await script(keys=["k"], args=["1"])
    batch = ScriptBatch(lone, {"write": WRITE})
    answers = await asyncio.gather(
        batch.call("write", ["a"], ["1"]), batch.call("write", ["b"], ["1"]),
        return_exceptions=True,
    )  # fmt: skip
    assert all(isinstance(a, NotDurable) for a in answers), answers
    # the writes happened on the primary: a redelivery finds them (the scripts are idempotent)
    assert await lone.exists("k", "a", "b") == 3
