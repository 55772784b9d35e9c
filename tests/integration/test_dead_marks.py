"""Dead-letter marks, the Redis adapter and its in-memory twin, held to one contract."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from messaging.transport.codec import Wire
from messaging.transport.dead_marks import (
    MARK_TTL_S,
    DeadLetterMarks,
    MemoryDeadLetterMarks,
    RedisDeadLetterMarks,
    mark_key,
)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def marks(request: pytest.FixtureRequest, namespace: str) -> DeadLetterMarks:
    if request.param == "memory":
        return MemoryDeadLetterMarks()
    redis_client: aioredis.Redis = request.getfixturevalue("redis_client")
    return RedisDeadLetterMarks(redis_client, namespace)


async def test_a_mark_remembers_forgets_and_is_per_queue(marks: DeadLetterMarks) -> None:
    wire = Wire(b"{", message_id="m-1")
    assert not await marks.copied("q", wire)
    assert await marks.remember("q", wire) is True
    assert await marks.remember("q", wire) is False, "already marked"
    assert await marks.copied("q", Wire(b"{", message_id="m-1", headers={"x": 1}))
    assert not await marks.copied("q", Wire(b"other body", message_id="m-1")), "another message"
    assert not await marks.copied("other", wire)
    await marks.forget("q", wire)
    assert not await marks.copied("q", wire)


@pytest.mark.integration
async def test_a_redis_mark_expires_in_the_namespace(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    marks = RedisDeadLetterMarks(redis_client, namespace)
    wire = Wire(b"{", message_id="m-1")
    await marks.remember("q", wire)
    key = mark_key(namespace, "q", wire)
    assert [k.decode() async for k in redis_client.scan_iter(match=f"{namespace}*")] == [key]
    assert 0 < await redis_client.ttl(key) <= MARK_TTL_S
