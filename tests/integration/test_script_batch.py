"""Script calls of one loop turn share a pipeline, and each still gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from orchestrator.runtime.script_batch import ScriptBatch

pytestmark = pytest.mark.integration

# INCRBY on the given key; an error reply when asked to fail. The random comment makes the
# script's sha one that Redis has never seen, so the first call meets NOSCRIPT.
SOURCE = """-- {tag}
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


class CountingRedis(aioredis.Redis):
    """The real client, counting its round trips: pipelines, and lone EVALSHAs."""

    round_trips = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        CountingRedis.round_trips += 1
        return super().pipeline(*args, **kwargs)

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        CountingRedis.round_trips += 1
        return super().evalsha(*args, **kwargs)


@pytest.fixture
async def batch(redis_client: aioredis.Redis, redis_url: str) -> AsyncIterator[ScriptBatch]:
    """``redis_client`` (the shared fixture) deletes this test's keys afterwards."""
    client = CountingRedis.from_url(redis_url)
    CountingRedis.round_trips = 0
    yield ScriptBatch(client, {"incr": SOURCE.format(tag=uuid4().hex)})
    await client.aclose()


async def test_calls_of_one_turn_share_a_round_trip_and_keep_their_own_answers(
    batch: ScriptBatch, redis_client: aioredis.Redis, namespace: str
) -> None:
    keys = [f"{namespace}counter:{i}" for i in range(20)]
    await batch.call("incr", [keys[0]], [0])  # loads the script (NOSCRIPT, then again)
    before = CountingRedis.round_trips

    results = await asyncio.gather(*(batch.call("incr", [key], [i]) for i, key in enumerate(keys)))

    assert results == [0, *range(1, 20)]  # each caller got the answer of its own call
    assert CountingRedis.round_trips - before == 1
    assert int(await redis_client.get(keys[19]) or 0) == 19


async def test_one_failing_call_does_not_fail_the_others(
    batch: ScriptBatch, namespace: str
) -> None:
    key = f"{namespace}counter"
    calls = [batch.call("incr", [key], [1]), batch.call("incr", [key], ["fail"])]
    calls.append(batch.call("incr", [key], [1]))

    first, failed, third = await asyncio.gather(*calls, return_exceptions=True)

    assert (first, third) == (1, 2)
    assert isinstance(failed, ResponseError)
    assert "asked to fail" in str(failed)


async def test_a_script_redis_does_not_know_is_loaded_and_run(
    batch: ScriptBatch, namespace: str
) -> None:
    assert await batch.call("incr", [f"{namespace}counter"], [5]) == 5
    assert CountingRedis.round_trips == 2  # the NOSCRIPT round trip, then the run after loading


async def test_a_lost_connection_reaches_every_caller(namespace: str) -> None:
    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    batch = ScriptBatch(unreachable, {"incr": SOURCE.format(tag=uuid4().hex)})
    calls = [batch.call("incr", [f"{namespace}k{i}"], [1]) for i in range(3)]

    results = await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(r, RedisConnectionError) for r in results), results
    await unreachable.aclose()


async def test_a_rider_goes_in_the_next_round_trip(batch: ScriptBatch, namespace: str) -> None:
    await batch.call("incr", [f"{namespace}warm"], [0])  # loads the script
    before = CountingRedis.round_trips
    rider = asyncio.ensure_future(
        batch.call("incr", [f"{namespace}rider"], [1], ride_within_s=60.0)
    )
    await asyncio.sleep(0)  # the rider is queued, and waits
    assert not rider.done()

    assert await batch.call("incr", [f"{namespace}urgent"], [1]) == 1

    assert await rider == 1
    assert CountingRedis.round_trips - before == 1  # both in one pipeline


async def test_a_rider_alone_goes_after_its_window(batch: ScriptBatch, namespace: str) -> None:
    result = await asyncio.wait_for(
        batch.call("incr", [f"{namespace}rider"], [3], ride_within_s=0.01), timeout=30
    )
    assert result == 3
