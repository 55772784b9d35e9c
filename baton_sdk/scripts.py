"""Many calls of one Lua script in one round trip, on one Redis server or a Redis Cluster.

redis-py's ``Script`` pipelines itself only on a single server's pipeline; a cluster pipeline
refuses ``evalsha`` by name. This loads the script first (on every primary of a cluster) and
queues raw EVALSHA, which both kinds route by the call's keys: keep each call's keys in one
hash slot (one ``{tag}``), as every script of a cluster must.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from messaging.durable_writes import queue_evalsha

Arg = str | int | float | bytes


async def call_many(
    client: Redis, script: AsyncScript, calls: Iterable[tuple[Sequence[Arg], Sequence[Arg]]]
) -> list[Any]:
    """Run ``script`` once per ``(keys, args)`` in ``calls``; the answers, in order."""
    await client.script_load(script.script)
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            queue_evalsha(pipe, script.sha, len(keys), *keys, *args)
        return list(await pipe.execute())
